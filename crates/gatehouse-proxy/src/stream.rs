//! Streaming pass-through. Bytes go to the client unchanged and as soon as each event is
//! complete (a provider's partial event is held back, bounded, until its end arrives, so a
//! stream cut mid-event never hands the client half an event); on the side each SSE event is
//! handed to the chain's [`StreamAnswer`] (usage, budget cap, output guardrail). This file is
//! transport only: the stream is bounded in idle time, total time and event size, and ends
//! with an OpenAI-style error event when it has to be cut. The request is finished when the
//! `StreamAnswer` is dropped, so a client that disconnects mid-stream is still metered and
//! audited exactly once.

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use gatehouse_core::{Denial, DenyCode};
use gatehouse_gates::{StreamAnswer, StreamEnd};
use gatehouse_providers::{SseEvent, SseScanner};
use tokio::time::{Instant, Sleep};

use crate::Runtime;

/// Largest single SSE event we inspect; a provider sending more is malformed or hostile.
const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// An error of the stream we relay: the provider's connection, or nothing (the mock).
pub trait StreamError: Display {
    /// The provider went quiet for longer than the client's idle (read) timeout.
    fn is_timeout(&self) -> bool;
}

impl StreamError for reqwest::Error {
    fn is_timeout(&self) -> bool {
        reqwest::Error::is_timeout(self)
    }
}

impl StreamError for std::convert::Infallible {
    fn is_timeout(&self) -> bool {
        false
    }
}

pub struct Inspected<S> {
    inner: Pin<Box<S>>,
    #[expect(dead_code, reason = "keeps the snapshot the stream started under alive to its end")]
    runtime: Arc<Runtime>,
    scanner: SseScanner,
    /// The response half of the chain: decides on each event, finishes the request when dropped.
    answer: StreamAnswer,
    idle: Duration,
    idle_timer: Pin<Box<Sleep>>,
    deadline: Pin<Box<Sleep>>,
    finished: bool,
    /// Bytes of an event that has not ended yet.
    pending: BytesMut,
}

/// Length of the prefix of `b` that ends with a complete event (after its blank line).
/// Searches from the end: a chunk usually ends exactly at an event boundary.
fn complete_prefix(b: &[u8]) -> usize {
    let mut end = b.len();
    while let Some(i) = memchr::memrchr(b'\n', &b[..end]) {
        let before = &b[..i];
        if before.ends_with(b"\n") || before.ends_with(b"\n\r") {
            return i + 1;
        }
        end = i;
    }
    0
}

/// The bounds on one stream.
#[derive(Clone, Copy)]
pub struct StreamBounds {
    pub idle: Duration,
    pub max_duration: Duration,
}

impl<S, E> Inspected<S>
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: StreamError,
{
    pub fn new(inner: S, runtime: Arc<Runtime>, answer: StreamAnswer, bounds: StreamBounds) -> Self {
        let now = Instant::now();
        Inspected {
            inner: Box::pin(inner),
            runtime,
            scanner: SseScanner::new(MAX_EVENT_BYTES),
            answer,
            idle: bounds.idle,
            idle_timer: Box::pin(tokio::time::sleep_until(now + bounds.idle)),
            deadline: Box::pin(tokio::time::sleep_until(now + bounds.max_duration)),
            finished: false,
            pending: BytesMut::new(),
        }
    }

    /// Ends the stream with an error event the OpenAI SDKs surface as an API error.
    fn cut(&mut self, end: StreamEnd, denial: Denial) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        self.finished = true;
        self.answer.end(end, Some(denial.code));
        let mut frame = b"data: ".to_vec();
        frame.extend_from_slice(&denial.body_bytes());
        frame.extend_from_slice(b"\n\n");
        Poll::Ready(Some(Ok(Bytes::from(frame))))
    }

    /// What of `chunk` may go to the client now: everything up to the last complete event.
    /// The common case (a chunk holding whole events) is forwarded without a copy.
    fn release(&mut self, chunk: Bytes) -> Result<Option<Bytes>, DenyCode> {
        if self.pending.is_empty() && complete_prefix(&chunk) == chunk.len() {
            return Ok(Some(chunk));
        }
        self.pending.extend_from_slice(&chunk);
        if self.pending.len() > MAX_EVENT_BYTES {
            return Err(DenyCode::UpstreamError);
        }
        let n = complete_prefix(&self.pending);
        Ok((n > 0).then(|| self.pending.split_to(n).freeze()))
    }

    /// Hands each complete event of a chunk to the chain. Pass-through: the bytes go out as
    /// they came. Re-framing (the guardrail may change the text): each event goes out as
    /// `data: <payload>` again, text held back (bounded) so a value split across events is
    /// redacted whole. An error ends the stream before anything of this chunk is released.
    fn check(&mut self, chunk: Bytes) -> Result<Option<Bytes>, Denial> {
        let Self { scanner, answer, .. } = self;
        let rewrite = answer.rewrites();
        let mut out = BytesMut::new();
        let mut failed = None;
        let frame = |out: &mut BytesMut, payload: &[u8]| {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(payload);
            out.extend_from_slice(b"\n\n");
        };
        let scanned = scanner.feed(&chunk, |ev| {
            if failed.is_some() {
                return;
            }
            let done = matches!(ev, SseEvent::Done);
            match answer.event(ev) {
                Err(d) => failed = Some(d),
                Ok(new) if rewrite => {
                    match (ev, new) {
                        // a chunk the guardrail held back whole is not sent (no empty deltas)
                        (_, Some(new)) if new.is_empty() => {}
                        (_, Some(new)) => frame(&mut out, &new),
                        (SseEvent::Data(d), None) => frame(&mut out, d),
                        (SseEvent::Done, None) => {}
                    }
                    if done {
                        frame(&mut out, b"[DONE]");
                    }
                }
                Ok(_) => {}
            }
        });
        if scanned.is_err() {
            return Err(Denial::new(DenyCode::UpstreamError));
        }
        if let Some(d) = failed {
            return Err(d);
        }
        if rewrite {
            return Ok((!out.is_empty()).then(|| out.freeze()));
        }
        self.release(chunk).map_err(Denial::new)
    }
}

impl<S, E> Stream for Inspected<S>
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: StreamError,
{
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            tracing::warn!(request_id = %this.answer.request_id(), "stream exceeded its maximum duration; cut");
            return this.cut(StreamEnd::Cut, Denial::new(DenyCode::UpstreamTimeout));
        }
        loop {
            let chunk = match this.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => chunk,
                Poll::Ready(Some(Err(e))) => return this.on_error(&e),
                Poll::Ready(None) => return this.on_end(),
                Poll::Pending => return this.on_pending(cx),
            };
            this.idle_timer.as_mut().reset(Instant::now() + this.idle);
            match this.check(chunk) {
                Ok(Some(ready)) => return Poll::Ready(Some(Ok(ready))),
                // only part of an event so far: keep reading
                Ok(None) => continue,
                Err(d) => {
                    let end = StreamEnd::of(d.code);
                    match end {
                        StreamEnd::UpstreamFailed => {
                            tracing::warn!(request_id = %this.answer.request_id(), "provider sent a malformed or oversized event; stream cut");
                        }
                        StreamEnd::Budget => {
                            tracing::warn!(request_id = %this.answer.request_id(), "stream ran past its budget reservation; cut");
                        }
                        _ => {}
                    }
                    return this.cut(end, d);
                }
            }
        }
    }
}

impl<S, E> Inspected<S>
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: StreamError,
{
    fn on_error(&mut self, e: &E) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        if e.is_timeout() {
            tracing::warn!(request_id = %self.answer.request_id(), "provider stream went idle; cut");
            return self.cut(StreamEnd::UpstreamTimeout, Denial::new(DenyCode::UpstreamTimeout));
        }
        tracing::warn!(request_id = %self.answer.request_id(), error = %e, "provider stream failed");
        self.cut(StreamEnd::UpstreamFailed, Denial::new(DenyCode::UpstreamError))
    }

    fn on_end(&mut self) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        if !self.answer.saw_done() {
            tracing::warn!(request_id = %self.answer.request_id(), "provider closed the stream before [DONE]");
            return self.cut(StreamEnd::UpstreamFailed, Denial::new(DenyCode::UpstreamError));
        }
        self.finished = true;
        self.answer.end(StreamEnd::Completed, None);
        // trailing bytes after [DONE] (a final newline) end the body
        let rest = std::mem::take(&mut self.pending);
        if rest.is_empty() { Poll::Ready(None) } else { Poll::Ready(Some(Ok(rest.freeze()))) }
    }

    fn on_pending(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        if self.idle_timer.as_mut().poll(cx).is_ready() {
            tracing::warn!(request_id = %self.answer.request_id(), "provider stream went idle; cut");
            return self.cut(StreamEnd::UpstreamTimeout, Denial::new(DenyCode::UpstreamTimeout));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::complete_prefix;

    #[test]
    fn complete_prefix_ends_after_the_last_blank_line() {
        assert_eq!(complete_prefix(b""), 0);
        assert_eq!(complete_prefix(b"data: a\n\n"), 9);
        assert_eq!(complete_prefix(b"data: a\n\ndata: b"), 9);
        assert_eq!(complete_prefix(b"data: a\r\n\r\ndata"), 11);
        assert_eq!(complete_prefix(b"data: a\n"), 0);
    }
}
