//! The one internal shape of a chat request and its answer. Every ingress (OpenAI Chat
//! Completions, Anthropic Messages) reads into it and every provider adapter writes from it, so
//! the gates see one shape whichever door a request came in by and whichever provider serves it.
//!
//! What a family can say that the shape cannot is kept in `extra`, tagged with the family it
//! came from: it reaches a provider of the same family unchanged and is refused (400, naming
//! the parameter) for any other, never dropped. Parts the target family cannot express are
//! refused the same way.
//!
//! Translation is linear in the input and builds nothing larger than it (plus a constant per
//! part); callers bound the input first (size, JSON depth, message count).

pub mod anthropic;
pub mod bedrock;
pub mod gemini;
pub mod openai;
mod origin;

pub use origin::Origin;

use serde_json::{Map, Value};

use crate::Error;

/// The wire format a request or answer is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    OpenAi,
    Anthropic,
    /// Google's Gemini API (a provider only: no client speaks it to us).
    Gemini,
    /// AWS Bedrock's Converse API (a provider only).
    Bedrock,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    /// System (and OpenAI `developer`) instructions, in order.
    pub system: Vec<Text>,
    pub messages: Vec<Message>,
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    /// `Some(false)`: at most one tool call per turn.
    pub parallel_tool_calls: Option<bool>,
    /// The most output tokens for one answer.
    pub max_output: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    /// Anthropic and Gemini only.
    pub top_k: Option<u64>,
    pub stop: Vec<String>,
    pub stream: bool,
    /// An end-user id for the provider's abuse monitoring (OpenAI `user`, Anthropic
    /// `metadata.user_id`).
    pub user: Option<String>,
    /// Fields this shape does not model, as the caller's family wrote them.
    pub extra: Extra,
}

/// Fields of one family that the shape does not model.
#[derive(Clone, Debug, PartialEq)]
pub struct Extra {
    pub family: Family,
    pub fields: Map<String, Value>,
}

impl Extra {
    pub fn new(family: Family) -> Extra {
        Extra { family, fields: Map::new() }
    }

    /// The fields to write for `target`: all of them for the same family; for another, the
    /// first one is refused by name (the caller's family's list of field names gives a static
    /// name, since a refusal never echoes what the caller sent).
    fn for_family(&self, target: Family) -> Result<&Map<String, Value>, Error> {
        if self.family == target {
            return Ok(&self.fields);
        }
        let known = match self.family {
            Family::OpenAi => openai::OTHER_FIELDS,
            Family::Anthropic => anthropic::OTHER_FIELDS,
            Family::Gemini | Family::Bedrock => &[],
        };
        match self.fields.keys().next() {
            None => Ok(&self.fields),
            Some(k) => Err(Error::Unsupported(known.iter().find(|n| **n == k).copied().unwrap_or("unknown_field"))),
        }
    }
}

/// A run of text, with Anthropic's prompt-caching mark (a hint other families ignore: it
/// changes what a call costs, never what it answers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text {
    pub text: String,
    pub cache: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub role: Role,
    pub parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    Text(Text),
    Image(Image),
    /// The model asked for a tool; `arguments` is JSON text, as the model wrote it.
    ToolCall {
        id: String,
        name: String,
        arguments: String,
    },
    /// A tool's answer to the call `call_id`: text and images.
    ToolResult {
        call_id: String,
        content: Vec<Part>,
        is_error: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Image {
    Url(String),
    Base64 { media_type: String, data: String },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    pub parameters: Value,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    None,
    /// Some tool must be called.
    Required,
    Tool(String),
}

/// A whole answer.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatResponse {
    pub id: String,
    pub model: String,
    /// Text and tool calls, in the order the model produced them.
    pub content: Vec<Part>,
    pub finish: Finish,
    pub usage: TokenUsage,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// The model ended its turn (or hit a stop sequence).
    Stop,
    /// The output cap was reached.
    Length,
    ToolCalls,
    /// The provider withheld (part of) the answer.
    ContentFilter,
}

impl Finish {
    /// How `family` writes it in an answer.
    pub const fn name(self, family: Family) -> &'static str {
        match (self, family) {
            (Finish::Stop, Family::OpenAi) => "stop",
            (Finish::Stop, Family::Anthropic) => "end_turn",
            (Finish::Length, Family::OpenAi) => "length",
            (Finish::Length, Family::Anthropic) => "max_tokens",
            (Finish::ToolCalls, Family::OpenAi) => "tool_calls",
            (Finish::ToolCalls, Family::Anthropic) => "tool_use",
            (Finish::ContentFilter, Family::OpenAi) => "content_filter",
            (Finish::ContentFilter, Family::Anthropic) => "refusal",
            (Finish::Stop | Finish::ToolCalls, Family::Gemini) => "STOP",
            (Finish::Length, Family::Gemini) => "MAX_TOKENS",
            (Finish::ContentFilter, Family::Gemini) => "SAFETY",
            (Finish::Stop, Family::Bedrock) => "end_turn",
            (Finish::Length, Family::Bedrock) => "max_tokens",
            (Finish::ToolCalls, Family::Bedrock) => "tool_use",
            (Finish::ContentFilter, Family::Bedrock) => "content_filtered",
        }
    }
}

/// Token counts as the provider reported them. `prompt` counts every input token, cached or
/// not; `cache_read` and `cache_write` say how many of them were read from or written to the
/// provider's prompt cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub prompt: u64,
    pub completion: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

impl From<TokenUsage> for crate::Usage {
    fn from(u: TokenUsage) -> crate::Usage {
        crate::Usage { prompt_tokens: u.prompt, completion_tokens: u.completion, cached_tokens: u.cache_read }
    }
}

/// A request in the chain's format (Chat Completions) as `target` writes it for a provider
/// serving `model`. What `target` cannot honour is refused, naming the parameter.
///
/// `origin`: what the caller's own family said beside it (a Messages client's `thinking`,
/// `top_k`, ...), put back for the target's writer to honour or refuse.
pub fn request_for(
    body: &Map<String, Value>,
    origin: Option<&Origin>,
    target: Family,
    model: &str,
) -> Result<Map<String, Value>, Error> {
    let mut shape = openai::request_from(body)?;
    if let Some(o) = origin {
        o.restore(&mut shape);
    }
    match target {
        Family::OpenAi => openai::request_to(&shape, model),
        Family::Anthropic => anthropic::request_to(&shape, model),
        Family::Gemini => gemini::request_to(&shape),
        Family::Bedrock => bedrock::request_to(&shape),
    }
}

/// A provider's whole answer in `family`'s format, read into the shape. A family that names
/// neither the answer nor the model (Bedrock) leaves them empty for the caller to fill.
pub fn response_of(family: Family, body: &Map<String, Value>) -> Result<ChatResponse, Error> {
    match family {
        Family::OpenAi => openai::response_from(body),
        Family::Anthropic => anthropic::response_from(body),
        Family::Gemini => gemini::response_from(body),
        Family::Bedrock => bedrock::response_from(body),
    }
}

/// A provider's streamed answer, read as it arrives and written as Chat Completions chunks
/// (`data:` frames), so the chain's stream inspection sees the one format it checks. Memory is
/// bounded per stream; a stream that breaks its protocol ends with an error event.
pub trait ChunkDecoder: Send {
    /// The next bytes from the provider, in any split.
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>);
    /// The provider closed the stream. One that ended properly gets its finish, usage and
    /// `[DONE]`; one cut short gets nothing (the inspection sees it cut).
    fn end(&mut self, out: &mut Vec<u8>);
    /// Whether the stream is over (finished, or failed).
    fn ended(&self) -> bool;
}

/// The decoder for `family`'s stream (`None` for OpenAI's, which needs none). `id` and
/// `model` name the chunks until the provider names its own; `created`: unix seconds.
pub fn chunk_decoder(family: Family, id: &str, model: &str, created: u64) -> Option<Box<dyn ChunkDecoder>> {
    let chunks = openai::ChunkStream::new(id, model, created);
    match family {
        Family::OpenAi => None,
        Family::Anthropic => Some(Box::new(anthropic::EventDecoder::new(chunks))),
        Family::Gemini => Some(Box::new(gemini::StreamDecoder::new(chunks))),
        Family::Bedrock => Some(Box::new(bedrock::StreamDecoder::new(chunks))),
    }
}

/// The error event of a stream that broke its protocol (what broke is logged, not sent).
const UNREADABLE: &str = "the provider's stream could not be read";

/// Feeds a provider's SSE bytes to `event`, one data event at a time. False when the framing or
/// an event broke the protocol: the caller ends the stream with an error.
fn feed_sse(
    sse: &mut crate::SseScanner,
    bytes: &[u8],
    out: &mut Vec<u8>,
    mut event: impl FnMut(&[u8], &mut Vec<u8>) -> Result<(), Error>,
) -> bool {
    let mut failed = false;
    let fed = sse.feed(bytes, |ev| {
        if let crate::SseEvent::Data(d) = ev {
            failed |= event(d, out).is_err();
        }
    });
    fed.is_ok() && !failed
}

/// Largest single event of a provider stream a decoder accepts.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

// Small readers shared by the family modules: each names the field it refuses.

fn string(v: &Value, field: &'static str) -> Result<String, Error> {
    v.as_str().map(str::to_owned).ok_or(Error::Field(field))
}

fn opt_string(o: &Map<String, Value>, key: &str, field: &'static str) -> Result<Option<String>, Error> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => string(v, field).map(Some),
    }
}

fn opt_f64(o: &Map<String, Value>, key: &str, field: &'static str) -> Result<Option<f64>, Error> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().filter(|f| f.is_finite()).map(Some).ok_or(Error::Field(field)),
    }
}

fn opt_u64(o: &Map<String, Value>, key: &str, field: &'static str) -> Result<Option<u64>, Error> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or(Error::Field(field)),
    }
}

fn opt_bool(o: &Map<String, Value>, key: &str, field: &'static str) -> Result<Option<bool>, Error> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_bool().map(Some).ok_or(Error::Field(field)),
    }
}

fn object<'a>(v: &'a Value, field: &'static str) -> Result<&'a Map<String, Value>, Error> {
    v.as_object().ok_or(Error::Field(field))
}

fn array<'a>(v: &'a Value, field: &'static str) -> Result<&'a Vec<Value>, Error> {
    v.as_array().ok_or(Error::Field(field))
}

/// The fields of `o` not in `known`, for [`Extra`].
fn rest(o: &Map<String, Value>, known: &[&str]) -> Map<String, Value> {
    o.iter().filter(|(k, _)| !known.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// A message's parts with a user turn's tool answers first, as Anthropic's and Bedrock's
/// APIs require (the rest keep their order).
fn results_first(m: &Message) -> Vec<&Part> {
    let mut parts: Vec<&Part> = m.parts.iter().collect();
    parts.sort_by_key(|p| !matches!(p, Part::ToolResult { .. }));
    parts
}

/// A tool call's arguments (JSON text, as OpenAI carries them) as the object Anthropic and
/// Gemini want; the empty string some models send for "no arguments" is the empty object.
fn arguments_object(arguments: &str) -> Result<Value, Error> {
    if arguments.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(Error::Unsupported("arguments")),
    }
}

fn number(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests;
