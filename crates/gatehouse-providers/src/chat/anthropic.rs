//! Anthropic Messages, read into and written from the internal shape.

use serde_json::{Map, Value, json};

use super::{
    ChatRequest, ChatResponse, Extra, Family, Finish, Image, Message, Part, Role, Text, TokenUsage, Tool, ToolChoice,
    array, number, object, opt_f64, opt_string, opt_u64, rest, string,
};
use crate::Error;

/// Request fields the shape models.
const MODELLED: &[&str] = &[
    "model",
    "messages",
    "system",
    "max_tokens",
    "tools",
    "tool_choice",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "stream",
    "metadata",
];

/// Anthropic request fields the shape carries as extras: named when another family refuses them.
pub(super) const OTHER_FIELDS: &[&str] =
    &["thinking", "service_tier", "container", "mcp_servers", "context_management", "inference_geo"];

/// What an OpenAI caller that set no output cap gets from a provider that requires one.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Reads a Messages request (already bounded in size, depth and message count).
pub fn request_from(body: &Map<String, Value>) -> Result<ChatRequest, Error> {
    let model = body.get("model").map_or(Err(Error::Field("model")), |m| string(m, "model"))?;
    let mut extra = Extra::new(Family::Anthropic);
    extra.fields = rest(body, MODELLED);
    let system = match body.get("system") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![Text { text: s.clone(), cache: false }],
        Some(Value::Array(blocks)) => blocks
            .iter()
            .map(|b| match block(b, false)? {
                Part::Text(t) => Ok(t),
                _ => Err(Error::Field("system")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(Error::Field("system")),
    };
    let mut messages = Vec::new();
    for m in body.get("messages").map_or(Err(Error::Field("messages")), |m| array(m, "messages"))? {
        let m = object(m, "messages")?;
        let role = match m.get("role").and_then(Value::as_str) {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            _ => return Err(Error::Field("role")),
        };
        let parts = match m.get("content") {
            Some(Value::String(s)) => vec![Part::Text(Text { text: s.clone(), cache: false })],
            Some(Value::Array(blocks)) => {
                blocks.iter().map(|b| block(b, role == Role::User)).collect::<Result<_, _>>()?
            }
            _ => return Err(Error::Field("content")),
        };
        messages.push(Message { role, parts });
    }
    let tools = match body.get("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(t) => array(t, "tools")?.iter().map(tool).collect::<Result<_, _>>()?,
    };
    let (tool_choice, parallel_tool_calls) = match body.get("tool_choice") {
        None | Some(Value::Null) => (None, None),
        Some(c) => {
            let c = object(c, "tool_choice")?;
            let choice = match c.get("type").and_then(Value::as_str) {
                Some("auto") => ToolChoice::Auto,
                Some("any") => ToolChoice::Required,
                Some("none") => ToolChoice::None,
                Some("tool") => {
                    ToolChoice::Tool(opt_string(c, "name", "tool_choice")?.ok_or(Error::Field("tool_choice"))?)
                }
                _ => return Err(Error::Field("tool_choice")),
            };
            let parallel = match c.get("disable_parallel_tool_use") {
                None | Some(Value::Null) => None,
                Some(Value::Bool(d)) => Some(!d),
                Some(_) => return Err(Error::Field("tool_choice")),
            };
            (Some(choice), parallel)
        }
    };
    let user = match body.get("metadata") {
        None | Some(Value::Null) => None,
        Some(m) => {
            let m = object(m, "metadata")?;
            if m.keys().any(|k| k != "user_id") {
                return Err(Error::Field("metadata"));
            }
            opt_string(m, "user_id", "metadata")?
        }
    };
    let stop = match body.get("stop_sequences") {
        None | Some(Value::Null) => Vec::new(),
        Some(s) => array(s, "stop_sequences")?.iter().map(|s| string(s, "stop_sequences")).collect::<Result<_, _>>()?,
    };
    Ok(ChatRequest {
        model,
        system,
        messages,
        tools,
        tool_choice,
        parallel_tool_calls,
        // required by the Messages API
        max_output: Some(opt_u64(body, "max_tokens", "max_tokens")?.ok_or(Error::Field("max_tokens"))?),
        temperature: opt_f64(body, "temperature", "temperature")?,
        top_p: opt_f64(body, "top_p", "top_p")?,
        top_k: opt_u64(body, "top_k", "top_k")?,
        stop,
        stream: super::opt_bool(body, "stream", "stream")?.unwrap_or(false),
        user,
        extra,
    })
}

/// One content block; tool answers only in user turns, tool calls only in assistant turns.
fn block(b: &Value, user: bool) -> Result<Part, Error> {
    let b = object(b, "content")?;
    let known = |keys: &[&str]| b.keys().all(|k| k == "type" || k == "cache_control" || keys.contains(&k.as_str()));
    let cache = b.get("cache_control").is_some_and(|c| !c.is_null());
    match b.get("type").and_then(Value::as_str) {
        Some("text") if known(&["text"]) => Ok(Part::Text(Text {
            text: b.get("text").and_then(Value::as_str).ok_or(Error::Field("content"))?.to_owned(),
            cache,
        })),
        Some("image") if known(&["source"]) => {
            let s = b.get("source").map_or(Err(Error::Field("source")), |s| object(s, "source"))?;
            Ok(Part::Image(match s.get("type").and_then(Value::as_str) {
                Some("base64") => Image::Base64 {
                    media_type: opt_string(s, "media_type", "source")?.ok_or(Error::Field("source"))?,
                    data: opt_string(s, "data", "source")?.ok_or(Error::Field("source"))?,
                },
                Some("url") => Image::Url(opt_string(s, "url", "source")?.ok_or(Error::Field("source"))?),
                _ => return Err(Error::Unsupported("source")),
            }))
        }
        Some("tool_use") if !user && known(&["id", "name", "input"]) => Ok(Part::ToolCall {
            id: opt_string(b, "id", "content")?.ok_or(Error::Field("content"))?,
            name: opt_string(b, "name", "content")?.ok_or(Error::Field("content"))?,
            arguments: serde_json::to_string(b.get("input").ok_or(Error::Field("input"))?).unwrap_or_default(),
        }),
        Some("tool_result") if user && known(&["tool_use_id", "content", "is_error"]) => {
            let content = match b.get("content") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::String(s)) => vec![Part::Text(Text { text: s.clone(), cache: false })],
                Some(Value::Array(inner)) => inner
                    .iter()
                    .map(|i| match block(i, false)? {
                        p @ (Part::Text(_) | Part::Image(_)) => Ok(p),
                        _ => Err(Error::Field("content")),
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(Error::Field("content")),
            };
            Ok(Part::ToolResult {
                call_id: opt_string(b, "tool_use_id", "tool_use_id")?.ok_or(Error::Field("tool_use_id"))?,
                content,
                is_error: super::opt_bool(b, "is_error", "is_error")?.unwrap_or(false),
            })
        }
        // thinking, documents, citations, server tools: Anthropic's own, not translated
        Some(_) => Err(Error::Unsupported("content")),
        None => Err(Error::Field("content")),
    }
}

fn tool(t: &Value) -> Result<Tool, Error> {
    let t = object(t, "tools")?;
    // a typed tool is one of Anthropic's server or client tools (web search, computer use...)
    if t.get("type").is_some_and(|ty| ty != "custom") {
        return Err(Error::Unsupported("tools"));
    }
    Ok(Tool {
        name: opt_string(t, "name", "tools")?.ok_or(Error::Field("tools"))?,
        description: opt_string(t, "description", "tools")?,
        parameters: t.get("input_schema").cloned().ok_or(Error::Field("input_schema"))?,
    })
}

/// Writes a request for an Anthropic provider serving `model`.
pub fn request_to(r: &ChatRequest, model: &str) -> Result<Map<String, Value>, Error> {
    let mut out = r.extra.for_family(Family::Anthropic, super::openai::OTHER_FIELDS)?.clone();
    out.insert("model".to_owned(), Value::from(model));
    out.insert("max_tokens".to_owned(), Value::from(r.max_output.unwrap_or(DEFAULT_MAX_TOKENS)));
    match r.system.as_slice() {
        [] => {}
        [one] if !one.cache => {
            out.insert("system".to_owned(), Value::from(one.text.as_str()));
        }
        many => {
            out.insert("system".to_owned(), many.iter().map(text_block).collect());
        }
    }
    let messages = r
        .messages
        .iter()
        .map(|m| {
            // a user turn's tool answers come first, as the API requires
            let mut parts: Vec<&Part> = m.parts.iter().collect();
            parts.sort_by_key(|p| !matches!(p, Part::ToolResult { .. }));
            let blocks = parts.into_iter().map(block_to).collect::<Result<Vec<_>, _>>()?;
            let role = if m.role == Role::User { "user" } else { "assistant" };
            Ok(json!({"role": role, "content": blocks}))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    out.insert("messages".to_owned(), Value::Array(messages));
    if !r.tools.is_empty() {
        let tools = r.tools.iter().map(|t| {
            let mut o = json!({"name": t.name.as_str(), "input_schema": t.parameters.clone()});
            if let Some(d) = &t.description {
                o["description"] = Value::from(d.as_str());
            }
            o
        });
        out.insert("tools".to_owned(), tools.collect());
    }
    if r.tool_choice.is_some() || r.parallel_tool_calls.is_some() {
        let mut c = match r.tool_choice.as_ref().unwrap_or(&ToolChoice::Auto) {
            ToolChoice::Auto => json!({"type": "auto"}),
            ToolChoice::None => json!({"type": "none"}),
            ToolChoice::Required => json!({"type": "any"}),
            ToolChoice::Tool(name) => json!({"type": "tool", "name": name.as_str()}),
        };
        if let Some(p) = r.parallel_tool_calls {
            c["disable_parallel_tool_use"] = Value::Bool(!p);
        }
        out.insert("tool_choice".to_owned(), c);
    }
    if let Some(t) = r.temperature {
        // the Messages API takes 0..1; OpenAI's 0..2 does not map onto it
        if !(0.0..=1.0).contains(&t) {
            return Err(Error::Unsupported("temperature"));
        }
        out.insert("temperature".to_owned(), number(t));
    }
    if let Some(p) = r.top_p {
        out.insert("top_p".to_owned(), number(p));
    }
    if let Some(k) = r.top_k {
        out.insert("top_k".to_owned(), Value::from(k));
    }
    if !r.stop.is_empty() {
        out.insert("stop_sequences".to_owned(), r.stop.iter().map(|s| Value::from(s.as_str())).collect());
    }
    if r.stream {
        out.insert("stream".to_owned(), Value::Bool(true));
    }
    if let Some(u) = &r.user {
        out.insert("metadata".to_owned(), json!({"user_id": u.as_str()}));
    }
    Ok(out)
}

fn text_block(t: &Text) -> Value {
    let mut b = json!({"type": "text", "text": t.text.as_str()});
    if t.cache {
        b["cache_control"] = json!({"type": "ephemeral"});
    }
    b
}

fn block_to(p: &Part) -> Result<Value, Error> {
    Ok(match p {
        Part::Text(t) => text_block(t),
        Part::Image(Image::Url(u)) => json!({"type": "image", "source": {"type": "url", "url": u.as_str()}}),
        Part::Image(Image::Base64 { media_type, data }) => json!({"type": "image", "source": {
            "type": "base64", "media_type": media_type.as_str(), "data": data.as_str()}}),
        Part::ToolCall { id, name, arguments } => json!({
            "type": "tool_use", "id": id.as_str(), "name": name.as_str(), "input": tool_input(arguments)?,
        }),
        Part::ToolResult { call_id, content, is_error } => {
            let content = match content.as_slice() {
                [Part::Text(t)] if !t.cache => Value::from(t.text.as_str()),
                many => many.iter().map(block_to).collect::<Result<Vec<_>, _>>()?.into(),
            };
            let mut b = json!({"type": "tool_result", "tool_use_id": call_id.as_str(), "content": content});
            if *is_error {
                b["is_error"] = Value::Bool(true);
            }
            b
        }
    })
}

/// A tool call's arguments as the object the Messages API wants (the empty string some
/// models send for "no arguments" is the empty object).
fn tool_input(arguments: &str) -> Result<Value, Error> {
    if arguments.trim().is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(Error::Unsupported("arguments")),
    }
}

/// Reads a whole Messages answer.
pub fn response_from(body: &Map<String, Value>) -> Result<ChatResponse, Error> {
    let blocks = body.get("content").and_then(Value::as_array).ok_or(Error::Answer("content"))?;
    let mut content = Vec::new();
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => content.push(Part::Text(Text {
                text: b.get("text").and_then(Value::as_str).ok_or(Error::Answer("content"))?.to_owned(),
                cache: false,
            })),
            Some("tool_use") => content.push(Part::ToolCall {
                id: b.get("id").and_then(Value::as_str).ok_or(Error::Answer("content"))?.to_owned(),
                name: b.get("name").and_then(Value::as_str).ok_or(Error::Answer("content"))?.to_owned(),
                arguments: serde_json::to_string(b.get("input").ok_or(Error::Answer("content"))?).unwrap_or_default(),
            }),
            // the model's reasoning is not part of the answer in the other families' formats
            Some("thinking" | "redacted_thinking") => {}
            _ => return Err(Error::Answer("content")),
        }
    }
    let finish = match body.get("stop_reason").and_then(Value::as_str) {
        Some("max_tokens" | "model_context_window_exceeded") => Finish::Length,
        Some("tool_use") => Finish::ToolCalls,
        Some("refusal") => Finish::ContentFilter,
        _ => Finish::Stop,
    };
    let u = body.get("usage");
    let count = |k: &str| u.and_then(|u| u.get(k)).and_then(Value::as_u64).unwrap_or(0);
    let (read, write) = (count("cache_read_input_tokens"), count("cache_creation_input_tokens"));
    Ok(ChatResponse {
        id: body.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
        model: body.get("model").and_then(Value::as_str).unwrap_or_default().to_owned(),
        content,
        finish,
        // Anthropic counts cached input apart from `input_tokens`; the shape counts all input
        usage: TokenUsage {
            prompt: count("input_tokens").saturating_add(read).saturating_add(write),
            completion: count("output_tokens"),
            cache_read: read,
            cache_write: write,
        },
    })
}

/// Writes a whole answer as the Messages API does.
pub fn response_to(r: &ChatResponse) -> Result<Value, Error> {
    let content =
        r.content.iter().map(block_to).collect::<Result<Vec<_>, _>>().map_err(|_| Error::Answer("content"))?;
    let stop = r.finish.name(Family::Anthropic);
    let u = r.usage;
    Ok(json!({
        "id": r.id.as_str(),
        "type": "message",
        "role": "assistant",
        "model": r.model.as_str(),
        "content": content,
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": {
            "input_tokens": u.prompt.saturating_sub(u.cache_read).saturating_sub(u.cache_write),
            "output_tokens": u.completion,
            "cache_creation_input_tokens": u.cache_write,
            "cache_read_input_tokens": u.cache_read,
        },
    }))
}
