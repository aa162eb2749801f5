//! The built-in `mock` provider: deterministic replies, streaming and usage figures, so that
//! Gatehouse works offline out of the box. Every reply says it comes from the mock, so no
//! one mistakes it for a model.

use bytes::Bytes;
use serde_json::json;

use crate::{ApiRequest, Usage};

/// The provider name the route table uses for the mock.
pub const PROVIDER: &str = "mock";
/// Models the mock serves.
pub const CHAT_MODEL: &str = "mock";
pub const EMBEDDING_MODEL: &str = "mock-embedding";

const REPLY: &str = "This is a deterministic reply from the Gatehouse mock provider.";
const DIMENSIONS: usize = 8;

fn usage(req: &ApiRequest, completion_tokens: u64) -> Usage {
    // about four bytes per token, the usual rule of thumb; at least one token
    let prompt_tokens = (req.text_len() as u64).div_ceil(4).max(1);
    Usage { prompt_tokens, completion_tokens, cached_tokens: 0 }
}

fn usage_json(u: Usage) -> serde_json::Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

fn words() -> impl Iterator<Item = &'static str> {
    REPLY.split_inclusive(' ')
}

/// A complete chat completion.
pub fn chat(req: &ApiRequest, id: &str, created: u64) -> (Bytes, Usage) {
    let u = usage(req, words().count() as u64);
    let body = json!({
        "id": format!("chatcmpl-mock-{id}"),
        "object": "chat.completion",
        "created": created,
        "model": CHAT_MODEL,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": REPLY},
            "finish_reason": "stop",
        }],
        "usage": usage_json(u),
    });
    (Bytes::from(serde_json::to_vec(&body).unwrap_or_default()), u)
}

/// A streamed chat completion as SSE frames: a role chunk, one chunk per word, a finish
/// chunk, a usage chunk (as OpenAI sends with `include_usage`) and `[DONE]`.
pub fn chat_stream(req: &ApiRequest, id: &str, created: u64) -> (Vec<Bytes>, Usage) {
    let u = usage(req, words().count() as u64);
    let id = format!("chatcmpl-mock-{id}");
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": CHAT_MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    };
    let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    events.extend(words().map(|w| chunk(json!({"content": w}), None)));
    events.push(chunk(json!({}), Some("stop")));
    events.push(json!({
        "id": id, "object": "chat.completion.chunk", "created": created, "model": CHAT_MODEL,
        "choices": [], "usage": usage_json(u),
    }));
    let mut frames: Vec<Bytes> = events
        .into_iter()
        .map(|e| {
            let mut f = b"data: ".to_vec();
            f.extend_from_slice(&serde_json::to_vec(&e).unwrap_or_default());
            f.extend_from_slice(b"\n\n");
            Bytes::from(f)
        })
        .collect();
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    (frames, u)
}

/// Deterministic embeddings: each input maps to a fixed unit-ish vector derived from its bytes.
pub fn embeddings(req: &ApiRequest) -> (Bytes, Usage) {
    let inputs: Vec<String> = match req.body().get("input") {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(a)) => a.iter().map(|v| v.to_string()).collect(),
        _ => vec![],
    };
    let data: Vec<serde_json::Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut v = [0f32; DIMENSIONS];
            for (j, b) in s.bytes().enumerate() {
                v[j % DIMENSIONS] += f32::from(b) / 255.0;
            }
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
            json!({"object": "embedding", "index": i, "embedding": v.iter().map(|x| x / norm).collect::<Vec<_>>()})
        })
        .collect();
    let u = Usage { prompt_tokens: (req.text_len() as u64).div_ceil(4).max(1), completion_tokens: 0, cached_tokens: 0 };
    let body = json!({
        "object": "list",
        "data": data,
        "model": EMBEDDING_MODEL,
        "usage": {"prompt_tokens": u.prompt_tokens, "total_tokens": u.prompt_tokens},
    });
    (Bytes::from(serde_json::to_vec(&body).unwrap_or_default()), u)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Endpoint, RequestBounds, SseEvent, SseScanner, usage_from_chunk};

    const B: RequestBounds = RequestBounds { max_depth: 16, max_messages: 16, max_embedding_inputs: 16 };

    #[test]
    fn chat_is_deterministic_and_labelled() {
        let req = ApiRequest::parse(
            Endpoint::ChatCompletions,
            br#"{"model":"mock","messages":[{"role":"user","content":"hello there"}]}"#,
            B,
        )
        .unwrap();
        let (a, ua) = chat(&req, "1", 0);
        let (b, _) = chat(&req, "1", 0);
        assert_eq!(a, b);
        let v: serde_json::Value = serde_json::from_slice(&a).unwrap();
        assert!(v["choices"][0]["message"]["content"].as_str().unwrap().contains("mock"));
        assert_eq!(ua.prompt_tokens, 3);
        assert_eq!(v["usage"]["completion_tokens"], ua.completion_tokens);
    }

    #[test]
    fn stream_reassembles_to_the_same_text_with_usage() {
        let req = ApiRequest::parse(
            Endpoint::ChatCompletions,
            br#"{"model":"mock","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
            B,
        )
        .unwrap();
        let (frames, u) = chat_stream(&req, "1", 0);
        let mut scanner = SseScanner::new(1 << 16);
        let mut text = String::new();
        let mut seen_usage = None;
        let mut done = false;
        for f in &frames {
            scanner
                .feed(f, |e| match e {
                    SseEvent::Data(d) => {
                        let v: serde_json::Value = serde_json::from_slice(d).unwrap();
                        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
                            text.push_str(c);
                        }
                        if let Some(u) = usage_from_chunk(d) {
                            seen_usage = Some(u);
                        }
                    }
                    SseEvent::Done => done = true,
                })
                .unwrap();
        }
        assert_eq!(text, REPLY);
        assert_eq!(seen_usage, Some(u));
        assert!(done);
    }

    #[test]
    fn embeddings_have_one_vector_per_input() {
        let req =
            ApiRequest::parse(Endpoint::Embeddings, br#"{"model":"mock-embedding","input":["a","bb"]}"#, B).unwrap();
        let (body, _) = embeddings(&req);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert_eq!(v["data"][1]["embedding"].as_array().unwrap().len(), DIMENSIONS);
    }
}
