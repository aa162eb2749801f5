//! Token usage as providers report it, read without trusting the rest of the body.

use serde::Deserialize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Of the prompt tokens, those served from the provider's prompt cache (priced lower).
    pub cached_tokens: u64,
}

#[derive(Deserialize)]
struct RawUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    prompt_tokens_details: Option<Details>,
}

#[derive(Deserialize)]
struct Details {
    #[serde(default)]
    cached_tokens: u64,
}

#[derive(Deserialize)]
struct WithUsage {
    usage: Option<RawUsage>,
}

/// Usage from a non-streamed response body; `None` if absent or unreadable.
pub fn usage_from_body(body: &[u8]) -> Option<Usage> {
    let u = serde_json::from_slice::<WithUsage>(body).ok()?.usage?;
    let cached = u.prompt_tokens_details.map_or(0, |d| d.cached_tokens).min(u.prompt_tokens);
    Some(Usage { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens, cached_tokens: cached })
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
        assert_eq!(usage_from_body(b), Some(Usage { prompt_tokens: 3, completion_tokens: 5, cached_tokens: 0 }));
        let cached =
            br#"{"usage":{"prompt_tokens":30,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":20}}}"#;
        assert_eq!(usage_from_body(cached), Some(Usage { prompt_tokens: 30, completion_tokens: 5, cached_tokens: 20 }));
        assert_eq!(usage_from_chunk(br#"{"choices":[{"delta":{"content":"hi"}}]}"#), None);
        assert_eq!(usage_from_chunk(br#"{"choices":[],"usage":null}"#), None);
        assert_eq!(usage_from_body(b"garbage"), None);
    }
}
