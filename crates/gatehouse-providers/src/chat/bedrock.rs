//! AWS Bedrock's Converse API as a provider: `POST /model/{modelId}/converse` and
//! `/converse-stream`, whose answer is AWS event-stream framing (binary frames with typed
//! headers and CRCs, read with `aws-smithy-eventstream`). The model is named in the URL.
//! Requests are written from the shape; answers and stream events are read back into it.

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::Message as Frame;
use bytes::BytesMut;
use serde_json::{Map, Value, json};

use super::openai::ChunkStream;
use super::{ChatRequest, ChatResponse, ChunkDecoder, Family, Finish, Image, Part, Role, Text, TokenUsage};
use super::{ToolChoice, arguments_object, number, results_first};
use crate::Error;

/// Writes a Converse request (the same body streams).
pub fn request_to(r: &ChatRequest) -> Result<Map<String, Value>, Error> {
    // no client speaks Converse to us: whatever another family could not model is refused here
    let mut out = r.extra.for_family(Family::Bedrock)?.clone();
    if r.user.is_some() {
        return Err(Error::Unsupported("user"));
    }
    if r.parallel_tool_calls == Some(false) {
        return Err(Error::Unsupported("parallel_tool_calls"));
    }
    // sampling beyond temperature and top_p is model-specific in Converse
    if r.top_k.is_some() {
        return Err(Error::Unsupported("top_k"));
    }
    if !r.system.is_empty() {
        let mut system = Vec::new();
        for t in &r.system {
            text_blocks(t, &mut system);
        }
        out.insert("system".to_owned(), Value::Array(system));
    }
    let messages = r
        .messages
        .iter()
        .map(|m| {
            let mut content = Vec::with_capacity(m.parts.len());
            for p in results_first(m) {
                block_to(p, &mut content)?;
            }
            let role = if m.role == Role::User { "user" } else { "assistant" };
            Ok(json!({"role": role, "content": content}))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    out.insert("messages".to_owned(), Value::Array(messages));
    let mut inference = Map::new();
    if let Some(n) = r.max_output {
        inference.insert("maxTokens".to_owned(), Value::from(n));
    }
    if let Some(t) = r.temperature {
        inference.insert("temperature".to_owned(), number(t));
    }
    if let Some(p) = r.top_p {
        inference.insert("topP".to_owned(), number(p));
    }
    if !r.stop.is_empty() {
        inference.insert("stopSequences".to_owned(), r.stop.iter().map(|s| Value::from(s.as_str())).collect());
    }
    if !inference.is_empty() {
        out.insert("inferenceConfig".to_owned(), Value::Object(inference));
    }
    if r.tools.is_empty() {
        if matches!(r.tool_choice, Some(ToolChoice::Required | ToolChoice::Tool(_))) {
            return Err(Error::Unsupported("tool_choice"));
        }
        return Ok(out);
    }
    let tools: Vec<Value> = r
        .tools
        .iter()
        .map(|t| {
            let mut spec = json!({"name": t.name.as_str(), "inputSchema": {"json": t.parameters.clone()}});
            if let Some(d) = &t.description {
                spec["description"] = Value::from(d.as_str());
            }
            json!({"toolSpec": spec})
        })
        .collect();
    let mut config = json!({"tools": tools});
    match &r.tool_choice {
        None | Some(ToolChoice::Auto) => {}
        Some(ToolChoice::Required) => config["toolChoice"] = json!({"any": {}}),
        Some(ToolChoice::Tool(name)) => config["toolChoice"] = json!({"tool": {"name": name.as_str()}}),
        // Converse has no "offer the tools but forbid them"
        Some(ToolChoice::None) => return Err(Error::Unsupported("tool_choice")),
    }
    out.insert("toolConfig".to_owned(), config);
    Ok(out)
}

/// A text block, followed by a cache point where the caller marked one.
fn text_blocks(t: &Text, out: &mut Vec<Value>) {
    out.push(json!({"text": t.text.as_str()}));
    if t.cache {
        out.push(json!({"cachePoint": {"type": "default"}}));
    }
}

fn block_to(p: &Part, out: &mut Vec<Value>) -> Result<(), Error> {
    match p {
        Part::Text(t) => text_blocks(t, out),
        Part::Image(i) => out.push(image(i)?),
        Part::ToolCall { id, name, arguments } => out.push(json!({"toolUse": {
            "toolUseId": id.as_str(), "name": name.as_str(), "input": arguments_object(arguments)?}})),
        Part::ToolResult { call_id, content, is_error } => {
            let content = content
                .iter()
                .map(|c| match c {
                    Part::Text(t) => Ok(json!({"text": t.text.as_str()})),
                    Part::Image(i) => image(i),
                    _ => Err(Error::Unsupported("content")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let status = if *is_error { "error" } else { "success" };
            out.push(json!({"toolResult": {"toolUseId": call_id.as_str(), "content": content, "status": status}}));
        }
    }
    Ok(())
}

/// An inline image; Converse takes bytes (base64 in JSON) in four formats, never a URL.
fn image(i: &Image) -> Result<Value, Error> {
    let Image::Base64 { media_type, data } = i else { return Err(Error::Unsupported("image_url")) };
    let format = match media_type.as_str() {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        _ => return Err(Error::Unsupported("image_url")),
    };
    Ok(json!({"image": {"format": format, "source": {"bytes": data.as_str()}}}))
}

/// Reads a whole Converse answer. Converse names neither the answer nor the model: the caller
/// fills them in.
pub fn response_from(body: &Map<String, Value>) -> Result<ChatResponse, Error> {
    let blocks = body.get("output").and_then(|o| o.pointer("/message/content")).and_then(Value::as_array);
    let mut content = Vec::new();
    for b in blocks.ok_or(Error::Answer("output"))? {
        if let Some(t) = b.get("text") {
            let text = t.as_str().ok_or(Error::Answer("content"))?.to_owned();
            content.push(Part::Text(Text { text, cache: false }));
        } else if let Some(u) = b.get("toolUse") {
            let field = |k: &str| u.get(k).and_then(Value::as_str).map(str::to_owned).ok_or(Error::Answer("toolUse"));
            let input = u.get("input").ok_or(Error::Answer("toolUse"))?;
            content.push(Part::ToolCall {
                id: field("toolUseId")?,
                name: field("name")?,
                arguments: serde_json::to_string(input).unwrap_or_default(),
            });
        } else if b.get("reasoningContent").is_none() {
            // the model's reasoning is not part of a chat answer; anything else is not ours to read
            return Err(Error::Answer("content"));
        }
    }
    let mut usage = TokenUsage::default();
    if let Some(u) = body.get("usage") {
        read_usage(&mut usage, u);
    }
    Ok(ChatResponse {
        id: String::new(),
        model: String::new(),
        content,
        finish: stop_reason(body.get("stopReason").and_then(Value::as_str)),
        usage,
    })
}

fn stop_reason(s: Option<&str>) -> Finish {
    match s {
        Some("max_tokens" | "model_context_window_exceeded") => Finish::Length,
        Some("tool_use") => Finish::ToolCalls,
        Some("guardrail_intervened" | "content_filtered") => Finish::ContentFilter,
        _ => Finish::Stop,
    }
}

/// Converse counts cache reads and writes apart from `inputTokens`; the shape counts all input.
fn read_usage(usage: &mut TokenUsage, u: &Value) {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let (read, write) = (n("cacheReadInputTokens"), n("cacheWriteInputTokens"));
    usage.prompt = n("inputTokens").saturating_add(read).saturating_add(write);
    usage.completion = n("outputTokens");
    usage.cache_read = read;
    usage.cache_write = write;
}

/// Reads `/converse-stream`: AWS event-stream frames, each with an `:event-type` header
/// (`messageStart`, `contentBlockStart`, `contentBlockDelta`, `contentBlockStop`,
/// `messageStop`, `metadata`) and the event as JSON; or an `exception`. The usage comes in
/// `metadata`, after `messageStop`; the stream ends when the connection closes.
#[derive(Debug)]
pub struct StreamDecoder {
    frames: MessageFrameDecoder,
    buf: BytesMut,
    /// Whether the frame at the head of `buf` has had its length checked.
    in_frame: bool,
    reader: Reader,
}

#[derive(Debug)]
struct Reader {
    chunks: ChunkStream,
}

impl StreamDecoder {
    pub fn new(chunks: ChunkStream) -> StreamDecoder {
        StreamDecoder {
            frames: MessageFrameDecoder::new(),
            buf: BytesMut::new(),
            in_frame: false,
            reader: Reader { chunks },
        }
    }

    fn frames(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        while !self.reader.chunks.ended() {
            if !self.in_frame {
                // a frame declares its length first: one larger than any event may be is refused
                // before it is buffered
                let Some(len) = self.buf.first_chunk::<4>() else { return Ok(()) };
                if u32::from_be_bytes(*len) as usize > super::MAX_EVENT_BYTES {
                    return Err(Error::EventTooLarge);
                }
                self.in_frame = true;
            }
            match self.frames.decode_frame(&mut self.buf) {
                Ok(DecodedFrame::Complete(frame)) => {
                    self.in_frame = false;
                    self.reader.frame(&frame, out)?;
                }
                Ok(DecodedFrame::Incomplete) => return Ok(()),
                Err(_) => return Err(Error::Answer("stream")),
            }
        }
        Ok(())
    }
}

/// A frame header's string value.
fn header<'a>(frame: &'a Frame, name: &str) -> Option<&'a str> {
    let h = frame.headers().iter().find(|h| h.name().as_str() == name)?;
    h.value().as_string().ok().map(|s| s.as_str())
}

impl Reader {
    fn frame(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<(), Error> {
        let bad = || Error::Answer("stream");
        match header(frame, ":message-type") {
            Some("event") => {}
            Some("exception" | "error") => {
                // the provider's words stay with the provider; its exception's name is safe to pass
                let kind = header(frame, ":exception-type").or_else(|| header(frame, ":error-code"));
                let kind = kind.filter(|k| k.len() <= 64 && k.chars().all(|c| c.is_ascii_alphanumeric()));
                self.chunks.error(&format!("the provider failed ({})", kind.unwrap_or("unknown")), out);
                return Ok(());
            }
            _ => return Err(bad()),
        }
        let v: Value = serde_json::from_slice(frame.payload()).map_err(|_| bad())?;
        let w = &mut self.chunks;
        match header(frame, ":event-type") {
            Some("messageStart") => w.role(out),
            Some("contentBlockStart") => {
                if let Some(u) = v.pointer("/start/toolUse") {
                    let index = v.get("contentBlockIndex").and_then(Value::as_u64).ok_or_else(bad)?;
                    let (id, name) = (u.get("toolUseId").cloned(), u.get("name").cloned());
                    w.open_tool(index, &id.unwrap_or_default(), &name.unwrap_or_default(), "", out)?;
                }
            }
            Some("contentBlockDelta") => {
                let d = v.get("delta").ok_or_else(bad)?;
                if let Some(t) = d.get("text") {
                    w.text(t.as_str().ok_or_else(bad)?, out);
                } else if let Some(u) = d.get("toolUse") {
                    let index = v.get("contentBlockIndex").and_then(Value::as_u64).ok_or_else(bad)?;
                    w.tool_args(index, u.get("input").and_then(Value::as_str).ok_or_else(bad)?, out)?;
                }
                // reasoning and its signature have no place in a Chat Completions answer
            }
            Some("messageStop") => w.set_finish(stop_reason(v.get("stopReason").and_then(Value::as_str))),
            Some("metadata") => {
                if let Some(u) = v.get("usage") {
                    read_usage(&mut w.usage, u);
                }
                w.finish_if_stopped(out);
            }
            Some("contentBlockStop") => {}
            // events added to the API later carry nothing a chat answer has
            Some(_) => {}
            None => return Err(bad()),
        }
        Ok(())
    }
}

impl ChunkDecoder for StreamDecoder {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if self.reader.chunks.ended() {
            return;
        }
        self.buf.extend_from_slice(bytes);
        if self.frames(out).is_err() {
            self.reader.chunks.error(super::UNREADABLE, out);
        }
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        // a stream that stopped but sent no usage still finished
        self.reader.chunks.finish_if_stopped(out);
    }

    fn ended(&self) -> bool {
        self.reader.chunks.ended()
    }
}
