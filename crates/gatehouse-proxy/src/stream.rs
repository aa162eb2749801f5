//! Streaming pass-through. Bytes go to the client unchanged and as soon as each event is
//! complete (a provider's partial event is held back, bounded, until its end arrives, so a
//! stream cut mid-event never hands the client half an event); on the side each SSE event is
//! scanned for usage and handed to the output guardrail. The stream is
//! bounded in idle time, total time and event size, and ends with an OpenAI-style error event
//! when it has to be cut. Metering happens in a drop guard, so a client that disconnects
//! mid-stream is still metered and audited exactly once.

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use gatehouse_core::{Denial, DenyCode, GateName, GateOutcome, RequestCx};
use gatehouse_gates::guardrails::Session;
use gatehouse_gates::ledger::{Hold, Used};
use gatehouse_gates::meter::Finished;
use gatehouse_providers::{SseEvent, SseScanner, Usage, usage_from_chunk};
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

/// Meters the request when dropped, whatever ended it.
struct FinishGuard {
    audit: gatehouse_gates::meter::AuditHook,
    cx: RequestCx,
    /// The output guardrail's state; its hits join the audit event.
    session: Session,
    endpoint: &'static str,
    usage: Option<Usage>,
    /// Data events that carried no usage: about one completion token each, the estimate a
    /// stream that ends without the provider's count settles with.
    events: u64,
    /// The budget reservations, settled when the stream ends however it ends.
    hold: Option<Hold>,
    end: Option<(&'static str, Option<DenyCode>)>,
}

impl Drop for FinishGuard {
    fn drop(&mut self) {
        // No end recorded means the client went away before the stream finished.
        let (end, code) = self.end.unwrap_or(("cancelled", None));
        if let Some(hold) = self.hold.take() {
            hold.settle(match self.usage {
                Some(u) => Used::Reported(u),
                None => Used::Estimated { completion_tokens: self.events },
            });
        }
        self.session.report_to(&mut self.cx);
        if end == "blocked" {
            self.cx.record(GateName::GuardrailsOut, GateOutcome::Deny(DenyCode::ContentBlocked));
        }
        gatehouse_gates::finish(
            &self.audit,
            &mut self.cx,
            Finished {
                endpoint: self.endpoint,
                status: 200,
                code,
                usage: self.usage,
                reached_provider: true,
                stream_end: Some(end),
            },
        );
    }
}

pub struct Inspected<S> {
    inner: Pin<Box<S>>,
    #[expect(dead_code, reason = "keeps the snapshot the stream started under alive to its end")]
    runtime: Arc<Runtime>,
    scanner: SseScanner,
    /// The output guardrail may change the text: events are held back and re-framed instead
    /// of passed through byte for byte.
    rewrite: bool,
    guard: FinishGuard,
    /// The data events a budget's reservation covers for this stream: past it the stream is cut.
    output_cap: Option<u64>,
    idle: Duration,
    idle_timer: Pin<Box<Sleep>>,
    deadline: Pin<Box<Sleep>>,
    saw_done: bool,
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
    pub fn new(
        inner: S,
        runtime: Arc<Runtime>,
        cx: RequestCx,
        endpoint: &'static str,
        bounds: StreamBounds,
        (session, hold): (Session, Hold),
    ) -> Self {
        let now = Instant::now();
        let output_cap = hold.output_cap();
        let audit = runtime.gates.audit.clone();
        let rewrite = session.rewrites_stream();
        Inspected {
            inner: Box::pin(inner),
            runtime,
            scanner: SseScanner::new(MAX_EVENT_BYTES),
            rewrite,
            guard: FinishGuard { audit, cx, session, endpoint, usage: None, events: 0, hold: Some(hold), end: None },
            output_cap,
            idle: bounds.idle,
            idle_timer: Box::pin(tokio::time::sleep_until(now + bounds.idle)),
            deadline: Box::pin(tokio::time::sleep_until(now + bounds.max_duration)),
            saw_done: false,
            finished: false,
            pending: BytesMut::new(),
        }
    }

    /// Ends the stream with an error event the OpenAI SDKs surface as an API error.
    fn cut(&mut self, end: &'static str, denial: Denial) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        self.finished = true;
        self.guard.end = Some((end, Some(denial.code)));
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

    /// Looks at a chunk's complete events; returns a refusal if the stream must stop.
    fn inspect(&mut self, chunk: &[u8]) -> Result<(), Denial> {
        let Self { scanner, guard, saw_done, .. } = self;
        let scanned = scanner.feed(chunk, |ev| match ev {
            SseEvent::Data(d) => match usage_from_chunk(d) {
                Some(u) => guard.usage = Some(u),
                None => guard.events += 1,
            },
            SseEvent::Done => *saw_done = true,
        });
        scanned.map_err(|_| Denial::new(DenyCode::UpstreamError))
    }

    /// The re-framing path: each complete event goes through the output guardrail and out as
    /// `data: <payload>` again; text is held back (bounded) so a value split across events is
    /// redacted whole. A block ends the stream before the value is released.
    fn rewrite(&mut self, chunk: &[u8]) -> Result<Option<Bytes>, Denial> {
        let Self { scanner, guard, saw_done, .. } = self;
        let mut out = BytesMut::new();
        let mut failed = None;
        let frame = |out: &mut BytesMut, payload: &[u8]| {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(payload);
            out.extend_from_slice(b"\n\n");
        };
        let scanned = scanner.feed(chunk, |ev| {
            if failed.is_some() {
                return;
            }
            match ev {
                SseEvent::Data(d) => {
                    match usage_from_chunk(d) {
                        Some(u) => guard.usage = Some(u),
                        None => guard.events += 1,
                    }
                    match guard.session.stream_event(d) {
                        Ok(Some(new)) => frame(&mut out, &new),
                        Ok(None) => frame(&mut out, d),
                        Err(den) => failed = Some(den),
                    }
                }
                SseEvent::Done => {
                    *saw_done = true;
                    match guard.session.stream_end() {
                        Ok(Some(last)) => frame(&mut out, &last),
                        Ok(None) => {}
                        Err(den) => failed = Some(den),
                    }
                    frame(&mut out, b"[DONE]");
                }
            }
        });
        if scanned.is_err() {
            return Err(Denial::new(DenyCode::UpstreamError));
        }
        if let Some(d) = failed {
            return Err(d);
        }
        Ok((!out.is_empty()).then(|| out.freeze()))
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
            tracing::warn!(request_id = %this.guard.cx.request_id, "stream exceeded its maximum duration; cut");
            return this.cut("cut", Denial::new(DenyCode::UpstreamTimeout));
        }
        loop {
            let chunk = match this.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => chunk,
                Poll::Ready(Some(Err(e))) => return this.on_error(&e),
                Poll::Ready(None) => return this.on_end(),
                Poll::Pending => return this.on_pending(cx),
            };
            this.idle_timer.as_mut().reset(Instant::now() + this.idle);
            let checked = if this.rewrite {
                this.rewrite(&chunk)
            } else {
                this.inspect(&chunk).and_then(|()| this.release(chunk).map_err(Denial::new))
            };
            if this.output_cap.is_some_and(|cap| this.guard.events > cap) {
                // the reservation is spent: what the provider sends beyond it is not paid for
                tracing::warn!(request_id = %this.guard.cx.request_id, "stream ran past its budget reservation; cut");
                return this.cut("budget", Denial::new(DenyCode::InsufficientQuota));
            }
            match checked {
                Ok(Some(ready)) => return Poll::Ready(Some(Ok(ready))),
                // only part of an event so far: keep reading
                Ok(None) => continue,
                Err(d) if d.code == DenyCode::UpstreamError => {
                    tracing::warn!(request_id = %this.guard.cx.request_id, "provider sent a malformed or oversized event; stream cut");
                    return this.cut("upstream_failed", d);
                }
                Err(d) if d.code == DenyCode::ContentBlocked => return this.cut("blocked", d),
                Err(d) => return this.cut("guardrail_failed", d),
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
            tracing::warn!(request_id = %self.guard.cx.request_id, "provider stream went idle; cut");
            return self.cut("upstream_timeout", Denial::new(DenyCode::UpstreamTimeout));
        }
        tracing::warn!(request_id = %self.guard.cx.request_id, error = %e, "provider stream failed");
        self.cut("upstream_failed", Denial::new(DenyCode::UpstreamError))
    }

    fn on_end(&mut self) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        if !self.saw_done {
            tracing::warn!(request_id = %self.guard.cx.request_id, "provider closed the stream before [DONE]");
            return self.cut("upstream_failed", Denial::new(DenyCode::UpstreamError));
        }
        self.finished = true;
        self.guard.end = Some(("completed", None));
        // trailing bytes after [DONE] (a final newline) end the body
        let rest = std::mem::take(&mut self.pending);
        if rest.is_empty() { Poll::Ready(None) } else { Poll::Ready(Some(Ok(rest.freeze()))) }
    }

    fn on_pending(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        if self.idle_timer.as_mut().poll(cx).is_ready() {
            tracing::warn!(request_id = %self.guard.cx.request_id, "provider stream went idle; cut");
            return self.cut("upstream_timeout", Denial::new(DenyCode::UpstreamTimeout));
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
