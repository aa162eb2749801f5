//! Anthropic Messages, read into and written from the internal shape.

use serde_json::{Map, Value, json};

use super::{
    ChatRequest, ChatResponse, Extra, Family, Finish, Image, Message, Part, Role, Text, TokenUsage, Tool, ToolChoice,
    arguments_object, array, number, object, opt_f64, opt_string, opt_u64, rest, results_first, string,
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
    let mut out = r.extra.for_family(Family::Anthropic)?.clone();
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
            let blocks = results_first(m).into_iter().map(block_to).collect::<Result<Vec<_>, _>>()?;
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
            "type": "tool_use", "id": id.as_str(), "name": name.as_str(), "input": arguments_object(arguments)?,
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
    // Anthropic counts cached input apart from `input_tokens`; the shape counts all input
    let mut usage = TokenUsage::default();
    if let Some(u) = body.get("usage") {
        read_usage(&mut usage, u);
        usage.completion = u.get("output_tokens").and_then(Value::as_u64).unwrap_or(0);
    }
    Ok(ChatResponse {
        id: body.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
        model: body.get("model").and_then(Value::as_str).unwrap_or_default().to_owned(),
        content,
        finish: stop_reason(body.get("stop_reason").and_then(Value::as_str)),
        usage,
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

/// Writes an OpenAI Chat Completions stream as the Messages API streams it: one OpenAI chunk
/// in, Anthropic's frames out (`message_start`, `content_block_start` / `_delta` / `_stop`,
/// `message_delta`, `message_stop`, `error`).
///
/// OpenAI interleaves text and tool-call arguments freely (the output guardrail, holding an
/// answer back, releases text and arguments in one chunk); Messages blocks are strictly one
/// after another. So a tool call's block opens when its first arguments arrive (or at the
/// end), and text arriving while a tool block is open is held and written after it. What is
/// held is bounded ([`MAX_HELD`]).
#[derive(Debug)]
pub struct MessagesStream {
    id: String,
    model: String,
    started: bool,
    ended: bool,
    /// The open content block: its index, and the OpenAI tool-call index it carries (`None`:
    /// a text block).
    open: Option<(usize, Option<u64>)>,
    next_index: usize,
    /// Tool calls announced (index, id, name) whose block has not opened yet.
    announced: Vec<(u64, String, String)>,
    /// Tool calls whose block has closed: more arguments for one cannot be written.
    closed_tools: Vec<u64>,
    held: String,
    finish: Option<Finish>,
    usage: TokenUsage,
}

/// Most text held back behind an open tool block, and most tool calls in one answer.
pub const MAX_HELD: usize = 1024 * 1024;
const MAX_TOOL_CALLS: usize = 128;

impl MessagesStream {
    /// `id` and `model` are used until the first chunk names its own.
    pub fn new(id: &str, model: &str) -> MessagesStream {
        MessagesStream {
            id: id.to_owned(),
            model: model.to_owned(),
            started: false,
            ended: false,
            open: None,
            next_index: 0,
            announced: Vec::new(),
            closed_tools: Vec::new(),
            held: String::new(),
            finish: None,
            usage: TokenUsage::default(),
        }
    }

    /// One OpenAI chunk (an SSE event's data). An error event ends the stream with Anthropic's
    /// `error` event; a chunk that is not what the API documents is the provider's failure.
    pub fn chunk(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        if self.ended {
            return Ok(());
        }
        let v: Value = serde_json::from_slice(data).map_err(|_| Error::Answer("stream"))?;
        if let Some(e) = v.get("error") {
            let message = e.get("message").and_then(Value::as_str).unwrap_or("the provider failed");
            self.error("api_error", message, out);
            return Ok(());
        }
        if !self.started {
            if let Some(id) = v.get("id").and_then(Value::as_str) {
                id.clone_into(&mut self.id);
            }
            if let Some(m) = v.get("model").and_then(Value::as_str) {
                m.clone_into(&mut self.model);
            }
            self.start(out);
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            let count = |p: &str| u.pointer(p).and_then(Value::as_u64).unwrap_or(0);
            self.usage = TokenUsage {
                prompt: count("/prompt_tokens"),
                completion: count("/completion_tokens"),
                cache_read: count("/prompt_tokens_details/cached_tokens"),
                cache_write: 0,
            };
        }
        let Some(choice) = v.get("choices").and_then(Value::as_array).and_then(|c| c.first()) else {
            return Ok(());
        };
        if let Some(delta) = choice.get("delta") {
            if let Some(text) = delta.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                self.text(text, out)?;
            }
            for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                self.tool_call(call, out)?;
            }
        }
        match choice.get("finish_reason").and_then(Value::as_str) {
            Some("length") => self.finish = Some(Finish::Length),
            Some("tool_calls" | "function_call") => self.finish = Some(Finish::ToolCalls),
            Some("content_filter") => self.finish = Some(Finish::ContentFilter),
            Some(_) => self.finish = Some(Finish::Stop),
            None => {}
        }
        Ok(())
    }

    fn text(&mut self, text: &str, out: &mut Vec<u8>) -> Result<(), Error> {
        match self.open {
            Some((_, Some(_))) => {
                if self.held.len() + text.len() > MAX_HELD {
                    return Err(Error::Answer("stream"));
                }
                self.held.push_str(text);
            }
            Some((index, None)) => text_delta(out, index, text),
            None => {
                let index = self.open_block(None, json!({"type": "text", "text": ""}), out);
                text_delta(out, index, text);
            }
        }
        Ok(())
    }

    fn tool_call(&mut self, call: &Value, out: &mut Vec<u8>) -> Result<(), Error> {
        let at = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let f = call.get("function");
        if let Some(id) = call.get("id").and_then(Value::as_str) {
            if self.announced.len() + self.closed_tools.len() >= MAX_TOOL_CALLS {
                return Err(Error::Answer("stream"));
            }
            let name = f.and_then(|f| f.get("name")).and_then(Value::as_str).unwrap_or_default();
            self.announced.push((at, id.to_owned(), name.to_owned()));
        }
        let Some(args) = f.and_then(|f| f.get("arguments")).and_then(Value::as_str).filter(|a| !a.is_empty()) else {
            return Ok(());
        };
        let index = match self.open {
            Some((index, Some(open))) if open == at => index,
            _ => {
                let Some(pos) = self.announced.iter().position(|(i, _, _)| *i == at) else {
                    // arguments for a call never announced, or whose block already closed
                    return Err(Error::Answer("stream"));
                };
                let (_, id, name) = self.announced.remove(pos);
                self.close(out);
                self.open_block(Some(at), json!({"type": "tool_use", "id": id, "name": name, "input": {}}), out)
            }
        };
        frame(
            out,
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index,
            "delta": {"type": "input_json_delta", "partial_json": args}}),
        );
        Ok(())
    }

    /// The end of the OpenAI stream (`[DONE]`, or the body's end): closes what is open, writes
    /// announced tool calls that got no arguments and held text, then the final counts. Once.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        if !self.started {
            self.start(out);
        }
        self.close(out);
        for (at, id, name) in std::mem::take(&mut self.announced) {
            self.open_block(Some(at), json!({"type": "tool_use", "id": id, "name": name, "input": {}}), out);
            self.close(out);
        }
        let u = self.usage;
        let stop = self.finish.unwrap_or(Finish::Stop).name(Family::Anthropic);
        frame(
            out,
            "message_delta",
            &json!({"type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": null},
            "usage": {"output_tokens": u.completion, "input_tokens": u.prompt.saturating_sub(u.cache_read),
                      "cache_read_input_tokens": u.cache_read}}),
        );
        frame(out, "message_stop", &json!({"type": "message_stop"}));
        self.ended = true;
    }

    /// Ends the stream with Anthropic's `error` event (`kind`: its error type).
    pub fn error(&mut self, kind: &str, message: &str, out: &mut Vec<u8>) {
        if !self.ended {
            frame(out, "error", &json!({"type": "error", "error": {"type": kind, "message": message}}));
            self.ended = true;
        }
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        frame(
            out,
            "message_start",
            &json!({"type": "message_start", "message": {
            "id": self.id.as_str(), "type": "message", "role": "assistant", "model": self.model.as_str(),
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0}}}),
        );
        // as the Messages API streams: a ping after the start (clients skip it)
        frame(out, "ping", &json!({"type": "ping"}));
        self.started = true;
    }

    fn open_block(&mut self, tool: Option<u64>, content_block: Value, out: &mut Vec<u8>) -> usize {
        let index = self.next_index;
        self.next_index += 1;
        frame(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index,
            "content_block": content_block}),
        );
        self.open = Some((index, tool));
        index
    }

    /// Closes the open block; text held behind a tool block follows as a block of its own.
    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some((index, tool)) = self.open.take() {
            frame(out, "content_block_stop", &json!({"type": "content_block_stop", "index": index}));
            if let Some(at) = tool {
                self.closed_tools.push(at);
            }
        }
        if !self.held.is_empty() {
            let text = std::mem::take(&mut self.held);
            let index = self.open_block(None, json!({"type": "text", "text": ""}), out);
            text_delta(out, index, &text);
            self.open = None;
            frame(out, "content_block_stop", &json!({"type": "content_block_stop", "index": index}));
        }
    }
}

fn text_delta(out: &mut Vec<u8>, index: usize, text: &str) {
    frame(
        out,
        "content_block_delta",
        &json!({"type": "content_block_delta", "index": index,
        "delta": {"type": "text_delta", "text": text}}),
    );
}

fn frame(out: &mut Vec<u8>, event: &str, data: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(&serde_json::to_vec(data).unwrap_or_default());
    out.extend_from_slice(b"\n\n");
}

/// Reads a Messages event stream (a provider's) into Chat Completions chunks.
#[derive(Debug)]
pub struct EventDecoder {
    sse: crate::SseScanner,
    events: Events,
}

impl EventDecoder {
    pub fn new(chunks: super::openai::ChunkStream) -> EventDecoder {
        EventDecoder { sse: crate::SseScanner::new(super::MAX_EVENT_BYTES), events: Events { chunks } }
    }

    /// One event's data (the SSE framing already read).
    pub fn event(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        self.events.event(data, out)
    }
}

#[derive(Debug)]
struct Events {
    chunks: super::openai::ChunkStream,
}

impl Events {
    /// One event's data. An `error` event becomes an OpenAI-style error event; an event that
    /// is not what the API documents is the provider's failure.
    pub fn event(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        if self.chunks.ended() {
            return Ok(());
        }
        let v: Value = serde_json::from_slice(data).map_err(|_| Error::Answer("stream"))?;
        let bad = || Error::Answer("stream");
        let w = &mut self.chunks;
        match v.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                let m = v.get("message").ok_or_else(bad)?;
                w.name(m.get("id").and_then(Value::as_str), m.get("model").and_then(Value::as_str));
                if let Some(u) = m.get("usage") {
                    read_usage(&mut w.usage, u);
                }
                w.role(out);
            }
            Some("content_block_start") => {
                let block = v.get("content_block").ok_or_else(bad)?;
                if block.get("type").and_then(Value::as_str) == Some("tool_use") {
                    let index = v.get("index").and_then(Value::as_u64).ok_or_else(bad)?;
                    let (id, name) = (block.get("id").cloned(), block.get("name").cloned());
                    w.open_tool(index, &id.unwrap_or_default(), &name.unwrap_or_default(), "", out)?;
                }
            }
            Some("content_block_delta") => {
                let d = v.get("delta").ok_or_else(bad)?;
                match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => w.text(d.get("text").and_then(Value::as_str).ok_or_else(bad)?, out),
                    Some("input_json_delta") => {
                        let index = v.get("index").and_then(Value::as_u64).ok_or_else(bad)?;
                        w.tool_args(index, d.get("partial_json").and_then(Value::as_str).ok_or_else(bad)?, out)?;
                    }
                    // reasoning and its signature have no place in a Chat Completions answer
                    _ => {}
                }
            }
            Some("message_delta") => {
                w.set_finish(stop_reason(v.pointer("/delta/stop_reason").and_then(Value::as_str)));
                if let Some(u) = v.get("usage") {
                    if let Some(n) = u.get("output_tokens").and_then(Value::as_u64) {
                        w.usage.completion = n;
                    }
                    if u.get("input_tokens").is_some() {
                        read_usage(&mut w.usage, u);
                    }
                }
            }
            Some("message_stop") => w.finish(out),
            Some("error") => {
                let message = v.pointer("/error/message").and_then(Value::as_str).unwrap_or("the provider failed");
                w.error(message, out);
            }
            Some("content_block_stop" | "ping") => {}
            _ => return Err(bad()),
        }
        Ok(())
    }
}

/// Input counts as the Messages API reports them (cache reads and writes apart).
fn read_usage(usage: &mut TokenUsage, u: &Value) {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let (read, write) = (n("cache_read_input_tokens"), n("cache_creation_input_tokens"));
    usage.prompt = n("input_tokens").saturating_add(read).saturating_add(write);
    usage.cache_read = read;
    usage.cache_write = write;
}

fn stop_reason(s: Option<&str>) -> Finish {
    match s {
        Some("max_tokens" | "model_context_window_exceeded") => Finish::Length,
        Some("tool_use") => Finish::ToolCalls,
        Some("refusal") => Finish::ContentFilter,
        _ => Finish::Stop,
    }
}

impl super::ChunkDecoder for EventDecoder {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let events = &mut self.events;
        if !super::feed_sse(&mut self.sse, bytes, out, |d, out| events.event(d, out)) {
            self.events.chunks.error(super::UNREADABLE, out);
        }
    }

    fn end(&mut self, _out: &mut Vec<u8>) {}

    fn ended(&self) -> bool {
        self.events.chunks.ended()
    }
}
