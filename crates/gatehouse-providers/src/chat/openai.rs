//! OpenAI Chat Completions, read into and written from the internal shape.

use serde_json::{Map, Value, json};

use super::{
    ChatRequest, ChatResponse, Extra, Family, Finish, Image, Message, Part, Role, Text, TokenUsage, Tool, ToolChoice,
    array, number, object, opt_bool, opt_f64, opt_string, opt_u64, rest, string,
};
use crate::Error;

/// Request fields the shape models.
const MODELLED: &[&str] = &[
    "model",
    "messages",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "stream",
    "stream_options",
    "user",
    "n",
];

/// OpenAI request fields the shape carries as extras: named when another family refuses them.
pub(super) const OTHER_FIELDS: &[&str] = &[
    "n",
    "seed",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
    "store",
    "metadata",
    "service_tier",
    "reasoning_effort",
    "modalities",
    "audio",
    "prediction",
    "web_search_options",
    "functions",
    "function_call",
    "verbosity",
    "safety_identifier",
    "prompt_cache_key",
];

/// Reads a Chat Completions request (already bounded in size, depth and message count).
pub fn request_from(body: &Map<String, Value>) -> Result<ChatRequest, Error> {
    let model = body.get("model").map_or(Err(Error::Field("model")), |m| string(m, "model"))?;
    let mut extra = Extra::new(Family::OpenAi);
    extra.fields = rest(body, MODELLED);
    // n = 1 is the default; more choices are something only OpenAI does
    if let Some(n) = opt_u64(body, "n", "n")?
        && n != 1
    {
        extra.fields.insert("n".to_owned(), Value::from(n));
    }
    let mut system = Vec::new();
    let mut messages: Vec<Message> = Vec::new();
    for m in body.get("messages").map_or(Err(Error::Field("messages")), |m| array(m, "messages"))? {
        let m = object(m, "messages")?;
        if m.contains_key("name") {
            return Err(Error::Unsupported("name"));
        }
        match m.get("role").and_then(Value::as_str) {
            Some("system" | "developer") => {
                // the other families have one system prompt ahead of the conversation
                if !messages.is_empty() {
                    return Err(Error::Unsupported("messages"));
                }
                for part in content(m.get("content"), false)? {
                    match part {
                        Part::Text(t) => system.push(t),
                        _ => return Err(Error::Field("content")),
                    }
                }
            }
            Some("user") => {
                let parts = content(m.get("content"), true)?;
                // what the user says after tool answers is the same turn, as the other
                // families write it
                match messages.last_mut() {
                    Some(last)
                        if last.role == Role::User
                            && last.parts.iter().all(|p| matches!(p, Part::ToolResult { .. })) =>
                    {
                        last.parts.extend(parts);
                    }
                    _ => messages.push(Message { role: Role::User, parts }),
                }
            }
            Some("assistant") => messages.push(assistant(m)?),
            Some("tool") => {
                let call_id = opt_string(m, "tool_call_id", "tool_call_id")?.ok_or(Error::Field("tool_call_id"))?;
                let result = Part::ToolResult { call_id, content: content(m.get("content"), false)?, is_error: false };
                // consecutive tool answers are one user turn, as the other families write them
                match messages.last_mut() {
                    Some(last)
                        if last.role == Role::User
                            && last.parts.iter().all(|p| matches!(p, Part::ToolResult { .. })) =>
                    {
                        last.parts.push(result);
                    }
                    _ => messages.push(Message { role: Role::User, parts: vec![result] }),
                }
            }
            Some("function") => return Err(Error::Unsupported("messages")),
            _ => return Err(Error::Field("role")),
        }
    }
    let tools = match body.get("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(t) => array(t, "tools")?.iter().map(tool).collect::<Result<_, _>>()?,
    };
    let tool_choice = match body.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            _ => return Err(Error::Field("tool_choice")),
        }),
        Some(Value::Object(o)) => {
            let f = o.get("function").map_or(Err(Error::Field("tool_choice")), |f| object(f, "tool_choice"))?;
            Some(ToolChoice::Tool(opt_string(f, "name", "tool_choice")?.ok_or(Error::Field("tool_choice"))?))
        }
        Some(_) => return Err(Error::Field("tool_choice")),
    };
    let stop = match body.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().map(|s| string(s, "stop")).collect::<Result<_, _>>()?,
        Some(_) => return Err(Error::Field("stop")),
    };
    Ok(ChatRequest {
        model,
        system,
        messages,
        tools,
        tool_choice,
        parallel_tool_calls: opt_bool(body, "parallel_tool_calls", "parallel_tool_calls")?,
        max_output: match opt_u64(body, "max_completion_tokens", "max_completion_tokens")? {
            Some(n) => Some(n),
            None => opt_u64(body, "max_tokens", "max_tokens")?,
        },
        temperature: opt_f64(body, "temperature", "temperature")?,
        top_p: opt_f64(body, "top_p", "top_p")?,
        top_k: None,
        stop,
        stream: opt_bool(body, "stream", "stream")?.unwrap_or(false),
        user: opt_string(body, "user", "user")?,
        extra,
    })
}

fn assistant(m: &Map<String, Value>) -> Result<Message, Error> {
    if m.get("refusal").is_some_and(|r| !r.is_null()) || m.get("audio").is_some_and(|a| !a.is_null()) {
        return Err(Error::Unsupported("messages"));
    }
    let mut parts = match m.get("content") {
        None | Some(Value::Null) => Vec::new(),
        c => content(c, false)?,
    };
    for c in m.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
        let c = object(c, "tool_calls")?;
        let f = c.get("function").map_or(Err(Error::Field("tool_calls")), |f| object(f, "tool_calls"))?;
        parts.push(Part::ToolCall {
            id: opt_string(c, "id", "tool_calls")?.ok_or(Error::Field("tool_calls"))?,
            name: opt_string(f, "name", "tool_calls")?.ok_or(Error::Field("tool_calls"))?,
            arguments: opt_string(f, "arguments", "tool_calls")?.unwrap_or_default(),
        });
    }
    Ok(Message { role: Role::Assistant, parts })
}

/// Message content: a string, or an array of parts (images only where `images`).
fn content(c: Option<&Value>, images: bool) -> Result<Vec<Part>, Error> {
    let text = |t: &str| Part::Text(Text { text: t.to_owned(), cache: false });
    match c {
        Some(Value::String(s)) => Ok(vec![text(s)]),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| {
                let p = object(p, "content")?;
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => Ok(text(p.get("text").and_then(Value::as_str).ok_or(Error::Field("content"))?)),
                    Some("image_url") if images => image(p),
                    Some("input_audio") => Err(Error::Unsupported("input_audio")),
                    Some("file") => Err(Error::Unsupported("file")),
                    _ => Err(Error::Field("content")),
                }
            })
            .collect(),
        _ => Err(Error::Field("content")),
    }
}

fn image(p: &Map<String, Value>) -> Result<Part, Error> {
    let i = p.get("image_url").map_or(Err(Error::Field("image_url")), |i| object(i, "image_url"))?;
    if i.get("detail").and_then(Value::as_str).is_some_and(|d| d != "auto") {
        return Err(Error::Unsupported("detail"));
    }
    let url = opt_string(i, "url", "image_url")?.ok_or(Error::Field("image_url"))?;
    Ok(Part::Image(match data_url(&url) {
        Some((media_type, data)) => Image::Base64 { media_type: media_type.to_owned(), data: data.to_owned() },
        None => Image::Url(url),
    }))
}

/// `data:<media type>;base64,<data>` split in two.
fn data_url(url: &str) -> Option<(&str, &str)> {
    let (head, data) = url.strip_prefix("data:")?.split_once(',')?;
    Some((head.strip_suffix(";base64")?, data))
}

fn tool(t: &Value) -> Result<Tool, Error> {
    let t = object(t, "tools")?;
    if t.get("type").and_then(Value::as_str) != Some("function") {
        return Err(Error::Unsupported("tools"));
    }
    let f = t.get("function").map_or(Err(Error::Field("tools")), |f| object(f, "tools"))?;
    if f.get("strict").and_then(Value::as_bool) == Some(true) {
        return Err(Error::Unsupported("strict"));
    }
    Ok(Tool {
        name: opt_string(f, "name", "tools")?.ok_or(Error::Field("tools"))?,
        description: opt_string(f, "description", "tools")?,
        parameters: f.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}})),
    })
}

/// Writes a request for an OpenAI-family provider serving `model`.
pub fn request_to(r: &ChatRequest, model: &str) -> Result<Map<String, Value>, Error> {
    if r.top_k.is_some() {
        return Err(Error::Unsupported("top_k"));
    }
    let mut out = r.extra.for_family(Family::OpenAi)?.clone();
    out.insert("model".to_owned(), Value::from(model));
    let mut messages: Vec<Value> =
        r.system.iter().map(|t| json!({"role": "system", "content": t.text.as_str()})).collect();
    for m in &r.messages {
        match m.role {
            Role::User => user_messages(&m.parts, &mut messages)?,
            Role::Assistant => messages.push(assistant_message(&m.parts)?),
        }
    }
    out.insert("messages".to_owned(), Value::Array(messages));
    if !r.tools.is_empty() {
        let tools = r.tools.iter().map(|t| {
            let mut f = json!({"name": t.name.as_str(), "parameters": t.parameters.clone()});
            if let Some(d) = &t.description {
                f["description"] = Value::from(d.as_str());
            }
            json!({"type": "function", "function": f})
        });
        out.insert("tools".to_owned(), tools.collect());
    }
    if let Some(c) = &r.tool_choice {
        let c = match c {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Tool(name) => json!({"type": "function", "function": {"name": name.as_str()}}),
        };
        out.insert("tool_choice".to_owned(), c);
    }
    if let Some(p) = r.parallel_tool_calls {
        out.insert("parallel_tool_calls".to_owned(), Value::Bool(p));
    }
    if let Some(n) = r.max_output {
        out.insert("max_completion_tokens".to_owned(), Value::from(n));
    }
    for (k, v) in [("temperature", r.temperature), ("top_p", r.top_p)] {
        if let Some(v) = v {
            out.insert(k.to_owned(), number(v));
        }
    }
    if !r.stop.is_empty() {
        out.insert("stop".to_owned(), r.stop.iter().map(|s| Value::from(s.as_str())).collect());
    }
    if r.stream {
        out.insert("stream".to_owned(), Value::Bool(true));
        // metering needs the real counts
        out.insert("stream_options".to_owned(), json!({"include_usage": true}));
    }
    if let Some(u) = &r.user {
        out.insert("user".to_owned(), Value::from(u.as_str()));
    }
    Ok(out)
}

/// A user turn: its tool answers become `tool` messages (first, as they answer the previous
/// turn), the rest one `user` message.
fn user_messages(parts: &[Part], out: &mut Vec<Value>) -> Result<(), Error> {
    let mut rest = Vec::new();
    for p in parts {
        match p {
            Part::ToolResult { call_id, content, is_error } => {
                if *is_error {
                    return Err(Error::Unsupported("is_error"));
                }
                let texts = content
                    .iter()
                    .map(|c| match c {
                        Part::Text(t) => Ok(t.text.as_str()),
                        _ => Err(Error::Unsupported("tool_result")),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                out.push(json!({"role": "tool", "tool_call_id": call_id.as_str(), "content": text_content(&texts)}));
            }
            Part::Text(t) => rest.push(json!({"type": "text", "text": t.text.as_str()})),
            Part::Image(Image::Url(u)) => rest.push(json!({"type": "image_url", "image_url": {"url": u.as_str()}})),
            Part::Image(Image::Base64 { media_type, data }) => {
                let url = format!("data:{media_type};base64,{data}");
                rest.push(json!({"type": "image_url", "image_url": {"url": url}}));
            }
            Part::ToolCall { .. } => return Err(Error::Field("messages")),
        }
    }
    if !rest.is_empty() || parts.is_empty() {
        let content = match rest.as_slice() {
            [one] if one["type"] == "text" => one["text"].clone(),
            _ => Value::Array(rest),
        };
        out.push(json!({"role": "user", "content": content}));
    }
    Ok(())
}

/// One text as a string; several as text parts (joining them would change what was sent).
fn text_content(texts: &[&str]) -> Value {
    match texts {
        [one] => Value::from(*one),
        _ => texts.iter().map(|t| json!({"type": "text", "text": t})).collect(),
    }
}

fn assistant_message(parts: &[Part]) -> Result<Value, Error> {
    let mut texts = Vec::new();
    let mut calls = Vec::new();
    for p in parts {
        match p {
            Part::Text(t) => texts.push(t.text.as_str()),
            Part::ToolCall { id, name, arguments } => calls.push(json!({
                "id": id.as_str(), "type": "function",
                "function": {"name": name.as_str(), "arguments": arguments.as_str()},
            })),
            Part::Image(_) | Part::ToolResult { .. } => return Err(Error::Unsupported("messages")),
        }
    }
    let mut m =
        json!({"role": "assistant", "content": if texts.is_empty() { Value::Null } else { text_content(&texts) }});
    if !calls.is_empty() {
        m["tool_calls"] = Value::Array(calls);
    }
    Ok(m)
}

/// Reads a whole Chat Completions answer (one choice).
pub fn response_from(body: &Map<String, Value>) -> Result<ChatResponse, Error> {
    let choices = body.get("choices").and_then(Value::as_array).ok_or(Error::Answer("choices"))?;
    let [choice] = choices.as_slice() else { return Err(Error::Answer("choices")) };
    let message = choice.get("message").and_then(Value::as_object).ok_or(Error::Answer("message"))?;
    let content = assistant(message).map_err(|_| Error::Answer("message"))?.parts;
    let finish = match choice.get("finish_reason").and_then(Value::as_str) {
        Some("length") => Finish::Length,
        Some("tool_calls" | "function_call") => Finish::ToolCalls,
        Some("content_filter") => Finish::ContentFilter,
        _ => Finish::Stop,
    };
    let u = body.get("usage");
    let count = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    let usage = TokenUsage {
        prompt: count(u.and_then(|u| u.get("prompt_tokens"))),
        completion: count(u.and_then(|u| u.get("completion_tokens"))),
        cache_read: count(u.and_then(|u| u.pointer("/prompt_tokens_details/cached_tokens"))),
        cache_write: 0,
    };
    Ok(ChatResponse {
        id: body.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
        model: body.get("model").and_then(Value::as_str).unwrap_or_default().to_owned(),
        content,
        finish,
        usage,
    })
}

/// Writes a whole answer as Chat Completions does (`created`: unix seconds).
pub fn response_to(r: &ChatResponse, created: u64) -> Result<Value, Error> {
    let message = assistant_message(&r.content).map_err(|_| Error::Answer("content"))?;
    let finish = r.finish.name(Family::OpenAi);
    let u = r.usage;
    Ok(json!({
        "id": r.id.as_str(),
        "object": "chat.completion",
        "created": created,
        "model": r.model.as_str(),
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": null}],
        "usage": {
            "prompt_tokens": u.prompt,
            "completion_tokens": u.completion,
            "total_tokens": u.prompt + u.completion,
            "prompt_tokens_details": {"cached_tokens": u.cache_read},
        },
    }))
}

/// Writes a provider's streamed answer as Chat Completions streams it: `data: <chunk>` frames,
/// ending with the finish chunk, a usage chunk and `[DONE]`. Each family's decoder reads its
/// provider's events and calls these; memory is constant.
#[derive(Debug)]
pub struct ChunkStream {
    id: String,
    model: String,
    created: u64,
    finish: Option<Finish>,
    pub(super) usage: TokenUsage,
    ended: bool,
    /// The provider's block of each tool call, by the call's position in the answer.
    tool_blocks: Vec<u64>,
}

/// Most tool calls in one streamed answer.
const MAX_STREAM_TOOL_CALLS: usize = 128;

impl ChunkStream {
    /// `id` and `model` are used until the provider names its own; `created`: unix seconds.
    pub fn new(id: &str, model: &str, created: u64) -> ChunkStream {
        ChunkStream {
            id: id.to_owned(),
            model: model.to_owned(),
            created,
            finish: None,
            usage: TokenUsage::default(),
            ended: false,
            tool_blocks: Vec::new(),
        }
    }

    /// Whether the stream has ended (finished, or an error).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The provider's own id and model for the chunks that follow.
    pub(super) fn name(&mut self, id: Option<&str>, model: Option<&str>) {
        if let Some(id) = id {
            id.clone_into(&mut self.id);
        }
        if let Some(model) = model {
            model.clone_into(&mut self.model);
        }
    }

    /// The first chunk: the assistant's role.
    pub(super) fn role(&self, out: &mut Vec<u8>) {
        self.chunk(out, json!({"role": "assistant", "content": ""}), None);
    }

    pub(super) fn text(&self, text: &str, out: &mut Vec<u8>) {
        self.chunk(out, json!({"content": text}), None);
    }

    /// A tool call opens as the provider's block `block` (its position among the answer's
    /// blocks, or the call's own count where the provider has no blocks): its id and name,
    /// and the first of its arguments (JSON text) when the provider sends them whole.
    pub(super) fn open_tool(
        &mut self,
        block: u64,
        id: &Value,
        name: &Value,
        arguments: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        if self.tool_blocks.len() >= MAX_STREAM_TOOL_CALLS {
            return Err(Error::Answer("stream"));
        }
        self.tool_blocks.push(block);
        let head = json!({"index": self.tool_blocks.len() - 1, "id": id, "type": "function",
            "function": {"name": name, "arguments": arguments}});
        self.chunk(out, json!({"tool_calls": [head]}), None);
        Ok(())
    }

    /// More arguments of the call opened as block `block`.
    pub(super) fn tool_args(&self, block: u64, arguments: &str, out: &mut Vec<u8>) -> Result<(), Error> {
        let index = self.tool_blocks.iter().position(|b| *b == block).ok_or(Error::Answer("stream"))?;
        self.chunk(out, json!({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}), None);
        Ok(())
    }

    /// How many tool calls have opened.
    pub(super) fn tool_calls(&self) -> usize {
        self.tool_blocks.len()
    }

    pub(super) fn set_finish(&mut self, f: Finish) {
        self.finish = Some(f);
    }

    /// For providers whose stream has no end marker: at the connection's close, the stream
    /// finished if the provider said why it stopped, else it was cut (nothing is written).
    pub(super) fn finish_if_stopped(&mut self, out: &mut Vec<u8>) {
        if self.finish.is_some() {
            self.finish(out);
        }
    }

    /// The finish chunk, the usage chunk and `[DONE]`. Once.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        let finish = self.finish.unwrap_or(Finish::Stop).name(Family::OpenAi);
        self.chunk(out, json!({}), Some(finish));
        let u = self.usage;
        let usage = json!({"id": self.id.as_str(), "object": "chat.completion.chunk", "created": self.created,
            "model": self.model.as_str(), "choices": [],
            "usage": {"prompt_tokens": u.prompt, "completion_tokens": u.completion, "total_tokens": u.prompt + u.completion,
                      "prompt_tokens_details": {"cached_tokens": u.cache_read}}});
        data_frame(out, &usage);
        out.extend_from_slice(b"data: [DONE]\n\n");
        self.ended = true;
    }

    /// Ends the stream with an OpenAI-style error event.
    pub fn error(&mut self, message: &str, out: &mut Vec<u8>) {
        if !self.ended {
            data_frame(
                out,
                &json!({"error": {"message": message, "type": "upstream_error", "code": "upstream_error"}}),
            );
            self.ended = true;
        }
    }

    fn chunk(&self, out: &mut Vec<u8>, delta: Value, finish: Option<&str>) {
        data_frame(
            out,
            &json!({"id": self.id.as_str(), "object": "chat.completion.chunk", "created": self.created,
            "model": self.model.as_str(), "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        );
    }
}

fn data_frame(out: &mut Vec<u8>, v: &Value) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&serde_json::to_vec(v).unwrap_or_default());
    out.extend_from_slice(b"\n\n");
}
