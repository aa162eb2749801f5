//! Google's Gemini API as a provider: `models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`. The model is named in the URL, never in the body. Requests
//! are written from the shape; answers and stream chunks are read back into it.
//!
//! Gemini answers a tool call by name, not by id, and may not give its calls ids: a call
//! without one is named `call_<n>` (its position in the answer), and a tool result is matched
//! to the latest call in the conversation with its id to find the name.

use serde_json::{Map, Value, json};

use super::openai::ChunkStream;
use super::{ChatRequest, ChatResponse, ChunkDecoder, Family, Finish, Image, Message, Part, Role, TokenUsage};
use super::{Text, ToolChoice, arguments_object, number};
use crate::Error;

/// Writes a `generateContent` request (the same body streams).
pub fn request_to(r: &ChatRequest) -> Result<Map<String, Value>, Error> {
    // no client speaks Gemini to us: whatever another family could not model is refused here
    let mut out = r.extra.for_family(Family::Gemini)?.clone();
    if r.user.is_some() {
        return Err(Error::Unsupported("user"));
    }
    if r.parallel_tool_calls == Some(false) {
        return Err(Error::Unsupported("parallel_tool_calls"));
    }
    if !r.system.is_empty() {
        let parts: Vec<Value> = r.system.iter().map(|t| json!({"text": t.text.as_str()})).collect();
        out.insert("systemInstruction".to_owned(), json!({"parts": parts}));
    }
    let contents = r
        .messages
        .iter()
        .map(|m| {
            let parts = m.parts.iter().map(|p| part_to(p, &r.messages)).collect::<Result<Vec<_>, _>>()?;
            let role = if m.role == Role::User { "user" } else { "model" };
            Ok(json!({"role": role, "parts": parts}))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    out.insert("contents".to_owned(), Value::Array(contents));
    if !r.tools.is_empty() {
        let declarations = r.tools.iter().map(|t| {
            // the JSON Schema as given: `parametersJsonSchema` takes all of it, where
            // `parameters` would reject keywords outside Gemini's OpenAPI subset
            let mut d = json!({"name": t.name.as_str(), "parametersJsonSchema": t.parameters.clone()});
            if let Some(desc) = &t.description {
                d["description"] = Value::from(desc.as_str());
            }
            d
        });
        out.insert("tools".to_owned(), json!([{"functionDeclarations": declarations.collect::<Vec<_>>()}]));
    }
    if let Some(choice) = &r.tool_choice {
        let config = match choice {
            ToolChoice::Auto => json!({"mode": "AUTO"}),
            ToolChoice::None => json!({"mode": "NONE"}),
            ToolChoice::Required => json!({"mode": "ANY"}),
            ToolChoice::Tool(name) => json!({"mode": "ANY", "allowedFunctionNames": [name.as_str()]}),
        };
        out.insert("toolConfig".to_owned(), json!({"functionCallingConfig": config}));
    }
    let mut generation = Map::new();
    if let Some(t) = r.temperature {
        generation.insert("temperature".to_owned(), number(t));
    }
    if let Some(p) = r.top_p {
        generation.insert("topP".to_owned(), number(p));
    }
    if let Some(k) = r.top_k {
        generation.insert("topK".to_owned(), Value::from(k));
    }
    if let Some(n) = r.max_output {
        generation.insert("maxOutputTokens".to_owned(), Value::from(n));
    }
    if !r.stop.is_empty() {
        generation.insert("stopSequences".to_owned(), r.stop.iter().map(|s| Value::from(s.as_str())).collect());
    }
    if !generation.is_empty() {
        out.insert("generationConfig".to_owned(), Value::Object(generation));
    }
    Ok(out)
}

fn part_to(p: &Part, conversation: &[Message]) -> Result<Value, Error> {
    Ok(match p {
        Part::Text(t) => json!({"text": t.text.as_str()}),
        Part::Image(Image::Base64 { media_type, data }) => {
            json!({"inlineData": {"mimeType": media_type.as_str(), "data": data.as_str()}})
        }
        // Gemini reads only files it hosts; it does not fetch arbitrary URLs
        Part::Image(Image::Url(_)) => return Err(Error::Unsupported("image_url")),
        Part::ToolCall { id, name, arguments } => {
            json!({"functionCall": {"id": id.as_str(), "name": name.as_str(), "args": arguments_object(arguments)?}})
        }
        Part::ToolResult { call_id, content, is_error } => {
            let name = call_name(conversation, call_id).ok_or(Error::Unsupported("tool_call_id"))?;
            let mut text = String::new();
            for part in content {
                match part {
                    Part::Text(t) => text.push_str(&t.text),
                    _ => return Err(Error::Unsupported("content")),
                }
            }
            let response = if *is_error { json!({"error": text}) } else { json!({"content": text}) };
            json!({"functionResponse": {"id": call_id.as_str(), "name": name, "response": response}})
        }
    })
}

/// The name of the latest tool call with this id (ids Gemini did not give are reused across
/// turns; a result answers the latest call).
fn call_name<'a>(conversation: &'a [Message], call_id: &str) -> Option<&'a str> {
    conversation.iter().rev().flat_map(|m| m.parts.iter().rev()).find_map(|p| match p {
        Part::ToolCall { id, name, .. } if id == call_id => Some(name.as_str()),
        _ => None,
    })
}

/// Reads a whole `generateContent` answer (the first candidate: one is all we ask for).
pub fn response_from(body: &Map<String, Value>) -> Result<ChatResponse, Error> {
    let mut content = Vec::new();
    let candidate = body.get("candidates").and_then(Value::as_array).and_then(|c| c.first());
    let finish = match candidate {
        Some(c) => {
            let parts = c.pointer("/content/parts").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
            for p in parts {
                if let Some(part) = part_from(p, content.len())? {
                    content.push(part);
                }
            }
            finish_reason(c.get("finishReason").and_then(Value::as_str), &content)
        }
        // no candidate: the prompt itself was blocked (`promptFeedback.blockReason`)
        None if body.get("promptFeedback").is_some() => Finish::ContentFilter,
        None => return Err(Error::Answer("candidates")),
    };
    Ok(ChatResponse {
        id: body.get("responseId").and_then(Value::as_str).unwrap_or_default().to_owned(),
        model: body.get("modelVersion").and_then(Value::as_str).unwrap_or_default().to_owned(),
        content,
        finish,
        usage: body.get("usageMetadata").map(usage_of).unwrap_or_default(),
    })
}

/// One answer part: text, or a whole function call (`n`: parts so far, for an id). The
/// model's thoughts are not part of the answer in the other families' formats.
fn part_from(p: &Value, n: usize) -> Result<Option<Part>, Error> {
    if p.get("thought").and_then(Value::as_bool) == Some(true) {
        return Ok(None);
    }
    if let Some(t) = p.get("text") {
        let text = t.as_str().ok_or(Error::Answer("parts"))?.to_owned();
        return Ok(Some(Part::Text(Text { text, cache: false })));
    }
    if let Some(f) = p.get("functionCall") {
        let name = f.get("name").and_then(Value::as_str).ok_or(Error::Answer("functionCall"))?.to_owned();
        let id = f.get("id").and_then(Value::as_str).map_or_else(|| format!("call_{n}"), str::to_owned);
        let arguments = serde_json::to_string(f.get("args").unwrap_or(&json!({}))).unwrap_or_default();
        return Ok(Some(Part::ToolCall { id, name, arguments }));
    }
    // other parts (executable code, its results, inline data) have no place in a chat answer
    Err(Error::Answer("parts"))
}

/// Gemini ends a turn with tool calls as `STOP`; the calls say what it was.
fn finish_reason(reason: Option<&str>, content: &[Part]) -> Finish {
    match reason {
        Some("MAX_TOKENS") => Finish::Length,
        Some("SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" | "LANGUAGE") => {
            Finish::ContentFilter
        }
        _ if content.iter().any(|p| matches!(p, Part::ToolCall { .. })) => Finish::ToolCalls,
        _ => Finish::Stop,
    }
}

/// `usageMetadata`: the prompt count includes cached input; thinking is billed as output.
fn usage_of(u: &Value) -> TokenUsage {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    TokenUsage {
        prompt: n("promptTokenCount"),
        completion: n("candidatesTokenCount").saturating_add(n("thoughtsTokenCount")),
        cache_read: n("cachedContentTokenCount"),
        cache_write: 0,
    }
}

/// Reads `streamGenerateContent?alt=sse`: each event is a whole `GenerateContentResponse`
/// holding the next pieces of text or whole function calls; the last one carries
/// `finishReason` and the usage. The stream has no end marker: it ends when the connection
/// closes, properly only if a finish reason came.
#[derive(Debug)]
pub struct StreamDecoder {
    sse: crate::SseScanner,
    reader: Reader,
}

#[derive(Debug)]
struct Reader {
    chunks: ChunkStream,
    started: bool,
}

impl StreamDecoder {
    pub fn new(chunks: ChunkStream) -> StreamDecoder {
        StreamDecoder { sse: crate::SseScanner::new(super::MAX_EVENT_BYTES), reader: Reader { chunks, started: false } }
    }
}

impl Reader {
    fn event(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        if self.chunks.ended() {
            return Ok(());
        }
        let v: Value = serde_json::from_slice(data).map_err(|_| Error::Answer("stream"))?;
        if let Some(e) = v.get("error") {
            let message = e.get("message").and_then(Value::as_str).unwrap_or("the provider failed");
            self.chunks.error(message, out);
            return Ok(());
        }
        if !self.started {
            self.started = true;
            let model = v.get("modelVersion").and_then(Value::as_str);
            self.chunks.name(v.get("responseId").and_then(Value::as_str), model);
            self.chunks.role(out);
        }
        if let Some(c) = v.get("candidates").and_then(Value::as_array).and_then(|c| c.first()) {
            for p in c.pointer("/content/parts").and_then(Value::as_array).map_or(&[][..], Vec::as_slice) {
                match part_from(p, self.chunks.tool_calls()).map_err(|_| Error::Answer("stream"))? {
                    Some(Part::Text(t)) => self.chunks.text(&t.text, out),
                    Some(Part::ToolCall { id, name, arguments }) => {
                        // calls come whole, without blocks: each is its own
                        let block = self.chunks.tool_calls() as u64;
                        self.chunks.open_tool(block, &Value::from(id), &Value::from(name), &arguments, out)?;
                    }
                    _ => {}
                }
            }
            if let Some(reason) = c.get("finishReason").and_then(Value::as_str) {
                let finish = match finish_reason(Some(reason), &[]) {
                    Finish::Stop if self.chunks.tool_calls() > 0 => Finish::ToolCalls,
                    f => f,
                };
                self.chunks.set_finish(finish);
            }
        } else if v.pointer("/promptFeedback/blockReason").is_some() {
            self.chunks.set_finish(Finish::ContentFilter);
        }
        if let Some(u) = v.get("usageMetadata") {
            self.chunks.usage = usage_of(u);
        }
        Ok(())
    }
}

impl ChunkDecoder for StreamDecoder {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let reader = &mut self.reader;
        if !super::feed_sse(&mut self.sse, bytes, out, |d, out| reader.event(d, out)) {
            self.reader.chunks.error(super::UNREADABLE, out);
        }
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        self.reader.chunks.finish_if_stopped(out);
    }

    fn ended(&self) -> bool {
        self.reader.chunks.ended()
    }
}
