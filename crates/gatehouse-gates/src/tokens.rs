//! Prompt token estimates for token rates: OpenAI's own BPE vocabularies (o200k, cl100k) for
//! the model families that use them, four bytes per token for the rest. An estimate, not a
//! bound: token rates are corrected to the provider's count after the call (budgets reserve
//! the body's byte size instead, which is a bound).

use bpe_openai::Tokenizer;
use gatehouse_providers::{ApiRequest, Endpoint};
use serde_json::Value;

/// Texts above this size are estimated at four bytes per token instead of tokenized (a 1 KiB
/// prompt tokenizes in about 17 µs; this keeps the worst case near 5 ms).
const TOKENIZE_AT_MOST: usize = 256 * 1024;

/// A message's framing in OpenAI's chat format (role, separators): about this many tokens.
const PER_MESSAGE: u64 = 4;

/// The vocabulary of a model family, by the provider's model name.
fn tokenizer(provider_model: &str) -> Option<&'static Tokenizer> {
    let m = provider_model.rsplit('/').next().unwrap_or(provider_model);
    let o200k = ["gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o"];
    let cl100k = ["gpt-4", "gpt-3.5", "text-embedding-3", "text-embedding-ada-002"];
    if o200k.iter().any(|p| m.starts_with(p)) {
        Some(bpe_openai::o200k_base())
    } else if cl100k.iter().any(|p| m.starts_with(p)) {
        Some(bpe_openai::cl100k_base())
    } else {
        None
    }
}

/// Loads the vocabularies now (about 60 ms) rather than on the first request that needs one.
pub fn warm() {
    let _ = (bpe_openai::o200k_base(), bpe_openai::cl100k_base());
}

fn texts<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| texts(x, out)),
        Value::Object(o) => {
            for k in ["content", "text", "arguments", "name", "input"] {
                if let Some(x) = o.get(k) {
                    texts(x, out);
                }
            }
            if let Some(calls) = o.get("tool_calls") {
                texts(calls, out);
            }
            if let Some(f) = o.get("function") {
                texts(f, out);
            }
        }
        _ => {}
    }
}

/// Estimated prompt tokens of a request for the model its provider serves. Read from the
/// field the endpoint's provider reads (never chosen by the body's keys: a stray `messages`
/// on an embeddings request must not shrink the estimate token rates are checked with).
pub fn prompt_estimate(req: &ApiRequest, provider_model: &str) -> u64 {
    let body = req.body();
    let mut parts = Vec::new();
    let framing = match (req.endpoint, body.get("messages")) {
        (Endpoint::ChatCompletions, Some(Value::Array(m))) => {
            m.iter().for_each(|x| texts(x, &mut parts));
            PER_MESSAGE * m.len() as u64 + 3
        }
        (Endpoint::ChatCompletions, _) => 3,
        (Endpoint::Embeddings, _) => {
            if let Some(i) = body.get("input") {
                texts(i, &mut parts);
            }
            0
        }
    };
    if let Some(tools) = body.get("tools") {
        // tool schemas count too; their JSON is a fair stand-in for how they are rendered
        return framing + by_size(parts.iter().map(|p| p.len()).sum::<usize>() + tools.to_string().len());
    }
    let size: usize = parts.iter().map(|p| p.len()).sum();
    match tokenizer(provider_model) {
        Some(t) if size <= TOKENIZE_AT_MOST => framing + parts.iter().map(|p| t.count(p) as u64).sum::<u64>(),
        _ => framing + by_size(size),
    }
}

fn by_size(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    use gatehouse_providers::RequestBounds;

    use super::*;

    const B: RequestBounds = RequestBounds { max_depth: 16, max_messages: 8, max_embedding_inputs: 8 };

    fn chat(body: &str) -> ApiRequest {
        ApiRequest::parse(Endpoint::ChatCompletions, body.as_bytes(), B).unwrap()
    }

    #[test]
    fn known_families_are_tokenized_others_estimated_by_size() {
        let r = chat(r#"{"model":"x","messages":[{"role":"user","content":"hello world"}]}"#);
        // "hello world" is 2 tokens in both vocabularies, plus one message's framing
        assert_eq!(prompt_estimate(&r, "gpt-4o-mini"), 2 + 4 + 3);
        assert_eq!(prompt_estimate(&r, "openai/gpt-4-turbo"), 2 + 4 + 3);
        assert_eq!(prompt_estimate(&r, "llama-3-70b"), 3 + 4 + 3, "11 bytes / 4, rounded up");
        let e =
            ApiRequest::parse(Endpoint::Embeddings, br#"{"model":"e","input":["hello world","hello"]}"#, B).unwrap();
        assert_eq!(prompt_estimate(&e, "text-embedding-3-small"), 3);
        // a stray field the provider ignores does not change what is counted
        let stray = br#"{"model":"e","input":["hello world","hello"],"messages":[]}"#;
        let e = ApiRequest::parse(Endpoint::Embeddings, stray, B).unwrap();
        assert_eq!(prompt_estimate(&e, "text-embedding-3-small"), 3);
        let r = chat(r#"{"model":"x","messages":[{"role":"user","content":"hello world"}],"input":"x"}"#);
        assert_eq!(prompt_estimate(&r, "gpt-4o-mini"), 2 + 4 + 3);
    }
}
