//! What a caller of another API family said that Chat Completions (the chain's format) cannot
//! carry: its family's own top-level fields, `top_k`, tool answers marked as errors, and
//! prompt-caching marks. None of it is content: the content goes through the chain (and its
//! guardrails) as a Chat Completions request, and this rides beside it.
//!
//! At the route gate it is put back on the checked request and the provider's family writes it:
//! a Messages client keeps everything the Messages API can say when an Anthropic model answers,
//! and a provider of another family refuses, by name (400), what it cannot honour, as a direct
//! translation would (cache marks are hints, not sent to a family without them).

use serde_json::{Map, Value};

use super::{ChatRequest, Extra, Family, Part, Text};

#[derive(Clone, Debug, PartialEq)]
pub struct Origin {
    pub family: Family,
    /// The family's own top-level fields (`thinking`, `service_tier`, ...).
    pub fields: Map<String, Value>,
    pub top_k: Option<u64>,
    /// Tool answers marked as errors, by call id.
    pub tool_errors: Vec<String>,
    /// Prompt-caching marks: positions among the system texts, and among the conversation's
    /// text parts in document order (tool answers' texts included).
    pub cached_system: Vec<usize>,
    pub cached_texts: Vec<usize>,
}

/// The conversation's text parts in document order.
fn texts_mut(r: &mut ChatRequest) -> impl Iterator<Item = &mut Text> {
    r.messages.iter_mut().flat_map(|m| m.parts.iter_mut()).flat_map(|p| -> Box<dyn Iterator<Item = &mut Text>> {
        match p {
            Part::Text(t) => Box::new(std::iter::once(t)),
            Part::ToolResult { content, .. } => Box::new(content.iter_mut().filter_map(|c| match c {
                Part::Text(t) => Some(t),
                _ => None,
            })),
            _ => Box::new(std::iter::empty()),
        }
    })
}

impl Origin {
    /// Takes out of `r` what only its family can say, leaving a request any family can be
    /// written from. `None` when there was nothing to take.
    pub fn split(r: &mut ChatRequest) -> Option<Origin> {
        let mut o = Origin {
            family: r.extra.family,
            fields: std::mem::take(&mut r.extra.fields),
            top_k: r.top_k.take(),
            tool_errors: Vec::new(),
            cached_system: Vec::new(),
            cached_texts: Vec::new(),
        };
        for (i, t) in r.system.iter_mut().enumerate() {
            if std::mem::take(&mut t.cache) {
                o.cached_system.push(i);
            }
        }
        for (i, t) in texts_mut(r).enumerate() {
            if std::mem::take(&mut t.cache) {
                o.cached_texts.push(i);
            }
        }
        for p in r.messages.iter_mut().flat_map(|m| m.parts.iter_mut()) {
            if let Part::ToolResult { call_id, is_error, .. } = p
                && std::mem::take(is_error)
            {
                o.tool_errors.push(call_id.clone());
            }
        }
        let empty = o.fields.is_empty()
            && o.top_k.is_none()
            && o.tool_errors.is_empty()
            && o.cached_system.is_empty()
            && o.cached_texts.is_empty();
        (!empty).then_some(o)
    }

    /// Puts it back on `r` (read from the checked request). Each family's writer then writes
    /// what it can say and refuses, by name, what it cannot (as for a direct translation).
    pub fn restore(&self, r: &mut ChatRequest) {
        r.extra = Extra { family: self.family, fields: self.fields.clone() };
        r.top_k = self.top_k;
        for p in r.messages.iter_mut().flat_map(|m| m.parts.iter_mut()) {
            if let Part::ToolResult { call_id, is_error, .. } = p {
                *is_error = self.tool_errors.contains(call_id);
            }
        }
        for i in &self.cached_system {
            if let Some(t) = r.system.get_mut(*i) {
                t.cache = true;
            }
        }
        for (i, t) in texts_mut(r).enumerate() {
            t.cache = self.cached_texts.contains(&i);
        }
    }
}
