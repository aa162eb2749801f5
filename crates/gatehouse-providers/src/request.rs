//! The parsed view of a data-plane request: the fields gates decide on, plus the whole
//! object so that fields we do not know pass through to the provider untouched.

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::{Error, check_depth};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Embeddings,
}

impl Endpoint {
    /// The scope a capability token needs for this endpoint (see gatehouse-tokens).
    pub const fn action(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat:completions",
            Endpoint::Embeddings => "embeddings:create",
        }
    }

    /// The body's field the provider reads the content from: what the input guardrail scans
    /// and sizes are measured on. By the endpoint, never by the body's keys: a stray
    /// `messages` on an embeddings request (servers ignore it) must not choose it.
    pub const fn content_field(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "messages",
            Endpoint::Embeddings => "input",
        }
    }

    /// Path below the provider's base URL.
    pub const fn upstream_path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Embeddings => "/embeddings",
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat_completions",
            Endpoint::Embeddings => "embeddings",
        }
    }
}

/// Limits applied while parsing (from the config snapshot).
#[derive(Clone, Copy, Debug)]
pub struct RequestBounds {
    pub max_depth: u32,
    pub max_messages: u32,
    pub max_embedding_inputs: u32,
}

const MAX_MODEL_NAME: usize = 256;

#[derive(Clone, Debug)]
pub struct ApiRequest {
    pub endpoint: Endpoint,
    pub model: String,
    pub stream: bool,
    /// Messages (chat) or inputs (embeddings).
    pub item_count: usize,
    /// Size of the body as sent: an upper bound on its prompt tokens for byte-level BPE
    /// tokenizers (a token is at least one byte; a message's template overhead is smaller
    /// than its JSON punctuation), which is what a budget reserves before the call.
    pub body_bytes: usize,
    /// The most output tokens the caller allows (`max_completion_tokens`, else `max_tokens`),
    /// times `n` choices; `None` when the caller set no cap.
    pub max_output: Option<u64>,
    /// How many choices the caller asked for (`n`, 1 by default).
    pub choices: u64,
    body: Map<String, Value>,
    /// The body as the route's provider reads it, when its API family is not the chain's:
    /// written once by the route gate (which refuses what cannot be translated) and sent as is.
    pub translated: Option<Bytes>,
    /// What the caller's own API family said beside the request (a non-OpenAI ingress sets
    /// it): put back for the provider's family to honour or refuse at the route gate.
    pub origin: Option<Box<crate::chat::Origin>>,
}

/// Largest output cap or choice count we take at face value; beyond it a value is a mistake.
const MAX_OUTPUT_TOKENS: u64 = 100_000_000;
const MAX_CHOICES: u64 = 128;

/// A positive integer field, bounded; absent or null is `None`.
fn bounded_count(body: &Map<String, Value>, field: &'static str, max: u64) -> Result<Option<u64>, Error> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().filter(|n| (1..=max).contains(n)).map(Some).ok_or(Error::Field(field)),
    }
}

impl ApiRequest {
    /// Parses and validates a request body. Bounded: depth is checked before any tree is
    /// built, and item counts before anything iterates them.
    pub fn parse(endpoint: Endpoint, body: &[u8], bounds: RequestBounds) -> Result<ApiRequest, Error> {
        check_depth(body, bounds.max_depth)?;
        let body_bytes = body.len();
        let value: Value = serde_json::from_slice(body).map_err(|_| Error::Json)?;
        let Value::Object(body) = value else {
            return Err(Error::NotAnObject);
        };
        let model = match body.get("model") {
            Some(Value::String(m)) if !m.is_empty() && m.len() <= MAX_MODEL_NAME => m.clone(),
            _ => return Err(Error::Field("model")),
        };
        let stream = match body.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(Error::Field("stream")),
        };
        let item_count = match endpoint {
            Endpoint::ChatCompletions => match body.get("messages") {
                Some(Value::Array(m)) if m.len() > bounds.max_messages as usize => {
                    return Err(Error::TooMany("messages"));
                }
                Some(Value::Array(m)) if !m.is_empty() && m.iter().all(Value::is_object) => m.len(),
                _ => return Err(Error::Field("messages")),
            },
            Endpoint::Embeddings => match body.get("input") {
                Some(Value::String(_)) => 1,
                Some(Value::Array(a)) if a.len() > bounds.max_embedding_inputs as usize => {
                    return Err(Error::TooMany("input"));
                }
                Some(Value::Array(a)) if !a.is_empty() => a.len(),
                _ => return Err(Error::Field("input")),
            },
        };
        if endpoint == Endpoint::Embeddings && stream {
            return Err(Error::Field("stream"));
        }
        let (max_output, choices) = match endpoint {
            Endpoint::Embeddings => (Some(0), 1),
            Endpoint::ChatCompletions => {
                let cap = match bounded_count(&body, "max_completion_tokens", MAX_OUTPUT_TOKENS)? {
                    Some(n) => Some(n),
                    None => bounded_count(&body, "max_tokens", MAX_OUTPUT_TOKENS)?,
                };
                let choices = bounded_count(&body, "n", MAX_CHOICES)?.unwrap_or(1);
                (cap.map(|c| c * choices), choices)
            }
        };
        Ok(ApiRequest {
            endpoint,
            model,
            stream,
            item_count,
            body_bytes,
            max_output,
            choices,
            body,
            translated: None,
            origin: None,
        })
    }

    /// The body to send upstream: the route gate's translation for a provider of another API
    /// family; else the caller's object with `model` replaced by the provider's name for it.
    /// For streams, usage reporting is switched on (if the caller did not decide) so metering
    /// sees the real token counts.
    /// The route gate's translation is handed over once: a later attempt at another
    /// deployment writes its own body.
    pub fn upstream_body(&mut self, provider_model: &str) -> Bytes {
        match self.translated.take() {
            Some(b) => b,
            None => self.openai_body(provider_model),
        }
    }

    /// The body in OpenAI's format for `provider_model` (another deployment than the one the
    /// route gate wrote a translation for), without giving up the request.
    pub fn openai_body(&mut self, provider_model: &str) -> Bytes {
        let stream = self.stream;
        let body = &mut self.body;
        body.insert("model".to_owned(), Value::String(provider_model.to_owned()));
        if stream && !body.contains_key("stream_options") {
            let mut opts = Map::new();
            opts.insert("include_usage".to_owned(), Value::Bool(true));
            body.insert("stream_options".to_owned(), Value::Object(opts));
        }
        // about the size it arrived at: no re-growing the buffer while writing
        let mut out = Vec::with_capacity(self.body_bytes + provider_model.len() + 64);
        match serde_json::to_writer(&mut out, &*body) {
            Ok(()) => Bytes::from(out),
            Err(_) => Bytes::new(),
        }
    }

    /// Read-only access for gates that inspect content (guardrails).
    pub fn body(&self) -> &Map<String, Value> {
        &self.body
    }

    /// For the input guardrail's redactions, which rewrite text in place (the shape the
    /// parser validated stays as it was).
    pub fn body_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.body
    }

    /// Total characters of text content in messages or inputs: a cheap size signal for
    /// the mock provider and for token estimates.
    pub fn text_len(&self) -> usize {
        fn walk(v: &Value) -> usize {
            match v {
                Value::String(s) => s.len(),
                Value::Array(a) => a.iter().map(walk).sum(),
                Value::Object(o) => o.get("content").or_else(|| o.get("text")).map_or(0, walk),
                _ => 0,
            }
        }
        self.body.get(self.endpoint.content_field()).map_or(0, walk)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const B: RequestBounds = RequestBounds { max_depth: 16, max_messages: 4, max_embedding_inputs: 3 };

    fn chat(body: &str) -> Result<ApiRequest, Error> {
        ApiRequest::parse(Endpoint::ChatCompletions, body.as_bytes(), B)
    }

    #[test]
    fn output_caps_are_read_bounded_and_multiplied_by_choices() {
        let r = chat(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":100,"n":3}"#).unwrap();
        assert_eq!((r.max_output, r.choices), (Some(300), 3));
        assert_eq!(r.body_bytes, 80);
        let r = chat(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":100,"max_completion_tokens":7}"#,
        )
        .unwrap();
        assert_eq!(r.max_output, Some(7), "max_completion_tokens wins");
        assert_eq!(chat(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#).unwrap().max_output, None);
        for bad in [
            r#""max_tokens":0"#,
            r#""max_tokens":-1"#,
            r#""max_tokens":1.5"#,
            r#""max_tokens":"9""#,
            r#""n":0"#,
            r#""n":1000"#,
        ] {
            let body = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],{bad}}}"#);
            assert!(matches!(chat(&body), Err(Error::Field(_))), "{bad}");
        }
    }

    #[test]
    fn keeps_unknown_fields_and_swaps_the_model() {
        let mut r = chat(
            r#"{"model":"fast","messages":[{"role":"user","content":"hi"}],"x_vendor":{"a":[1,2]},"temperature":0.2}"#,
        )
        .unwrap();
        assert_eq!(r.model, "fast");
        assert!(!r.stream);
        let out: Value = serde_json::from_slice(&r.upstream_body("gpt-4o-mini")).unwrap();
        assert_eq!(out["model"], "gpt-4o-mini");
        assert_eq!(out["x_vendor"]["a"][1], 2);
        assert_eq!(out["temperature"], 0.2);
        assert!(out.get("stream_options").is_none());
    }

    #[test]
    fn streams_ask_for_usage_unless_the_caller_chose() {
        let mut r = chat(r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        let out: Value = serde_json::from_slice(&r.upstream_body("m")).unwrap();
        assert_eq!(out["stream_options"]["include_usage"], true);
        let mut r = chat(r#"{"model":"m","stream":true,"stream_options":{"include_usage":false},"messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        let out: Value = serde_json::from_slice(&r.upstream_body("m")).unwrap();
        assert_eq!(out["stream_options"]["include_usage"], false);
    }

    #[test]
    fn rejects_bad_shapes_with_the_field_name() {
        assert_eq!(chat("not json").unwrap_err(), Error::Json);
        assert_eq!(chat("[1]").unwrap_err(), Error::NotAnObject);
        assert_eq!(chat(r#"{"messages":[{}]}"#).unwrap_err(), Error::Field("model"));
        assert_eq!(chat(r#"{"model":5,"messages":[{}]}"#).unwrap_err(), Error::Field("model"));
        assert_eq!(chat(r#"{"model":"m","messages":[]}"#).unwrap_err(), Error::Field("messages"));
        assert_eq!(chat(r#"{"model":"m","messages":["x"]}"#).unwrap_err(), Error::Field("messages"));
        assert_eq!(chat(r#"{"model":"m","stream":"yes","messages":[{}]}"#).unwrap_err(), Error::Field("stream"));
        assert_eq!(chat(r#"{"model":"m","messages":[{},{},{},{},{}]}"#).unwrap_err(), Error::TooMany("messages"));
        let deep = format!(r#"{{"model":"m","messages":[{{}}],"x":{}{}}}"#, "[".repeat(20), "]".repeat(20));
        assert_eq!(chat(&deep).unwrap_err(), Error::TooDeep);
    }

    #[test]
    fn embeddings_inputs_are_bounded() {
        let e = |b: &str| ApiRequest::parse(Endpoint::Embeddings, b.as_bytes(), B);
        assert_eq!(e(r#"{"model":"m","input":"hello"}"#).unwrap().item_count, 1);
        assert_eq!(e(r#"{"model":"m","input":["a","b"]}"#).unwrap().item_count, 2);
        assert_eq!(e(r#"{"model":"m","input":["a","b","c","d"]}"#).unwrap_err(), Error::TooMany("input"));
        assert_eq!(e(r#"{"model":"m"}"#).unwrap_err(), Error::Field("input"));
    }

    proptest! {
        #[test]
        fn parse_never_panics(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = ApiRequest::parse(Endpoint::ChatCompletions, &body, B);
            let _ = ApiRequest::parse(Endpoint::Embeddings, &body, B);
        }

        #[test]
        fn parse_never_panics_on_jsonish(body in r#"[\{\}\[\]":,a-z0-9 ]{0,200}"#) {
            let _ = ApiRequest::parse(Endpoint::ChatCompletions, body.as_bytes(), B);
        }
    }
}
