//! Token usage as providers report it, read without trusting the rest of the body.

use serde::Deserialize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
}

#[derive(Deserialize)]
struct WithUsage {
    usage: Option<Usage>,
}

/// Usage from a non-streamed response body; `None` if absent or unreadable.
pub fn usage_from_body(body: &[u8]) -> Option<Usage> {
    serde_json::from_slice::<WithUsage>(body).ok().and_then(|w| w.usage)
}

/// Usage from one SSE `data:` payload. Cheap reject first: most chunks carry no usage.
pub fn usage_from_chunk(data: &[u8]) -> Option<Usage> {
    memchr::memmem::find(data, b"\"usage\"")?;
    usage_from_body(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_usage_and_ignores_the_rest() {
        let b =
            br#"{"id":"x","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8,"extra":{}}}"#;
        assert_eq!(usage_from_body(b), Some(Usage { prompt_tokens: 3, completion_tokens: 5 }));
        assert_eq!(usage_from_chunk(br#"{"choices":[{"delta":{"content":"hi"}}]}"#), None);
        assert_eq!(usage_from_chunk(br#"{"choices":[],"usage":null}"#), None);
        assert_eq!(usage_from_body(b"garbage"), None);
    }
}
