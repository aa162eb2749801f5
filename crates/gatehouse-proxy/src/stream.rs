//! Streaming pass-through. Bytes go to the client as they arrive, unchanged; on the side each
//! SSE event is scanned (bounded) for usage and handed to the output guardrail. The stream is
//! bounded in idle time, total time and event size, and ends with an OpenAI-style error event
//! when it has to be cut. Metering happens in a drop guard, so a client that disconnects
//! mid-stream is still metered and audited exactly once.

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use gatehouse_core::{Denial, DenyCode, RequestCx};
use gatehouse_gates::Verdict;
use gatehouse_gates::meter::Finished;
use gatehouse_providers::{SseEvent, SseScanner, Usage, usage_from_chunk};
use tokio::time::{Instant, Sleep};

use crate::Runtime;

/// Largest single SSE event we inspect; a provider sending more is malformed or hostile.
const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Meters the request when dropped, whatever ended it.
struct FinishGuard {
    cx: RequestCx,
    endpoint: &'static str,
    usage: Option<Usage>,
    end: Option<(&'static str, Option<DenyCode>)>,
}

impl Drop for FinishGuard {
    fn drop(&mut self) {
        // No end recorded means the client went away before the stream finished.
        let (end, code) = self.end.unwrap_or(("cancelled", None));
        gatehouse_gates::finish(
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
    runtime: Arc<Runtime>,
    scanner: SseScanner,
    guard: FinishGuard,
    idle: Duration,
    idle_timer: Pin<Box<Sleep>>,
    deadline: Pin<Box<Sleep>>,
    saw_done: bool,
    finished: bool,
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
    E: Display,
{
    pub fn new(inner: S, runtime: Arc<Runtime>, cx: RequestCx, endpoint: &'static str, bounds: StreamBounds) -> Self {
        let now = Instant::now();
        Inspected {
            inner: Box::pin(inner),
            runtime,
            scanner: SseScanner::new(MAX_EVENT_BYTES),
            guard: FinishGuard { cx, endpoint, usage: None, end: None },
            idle: bounds.idle,
            idle_timer: Box::pin(tokio::time::sleep_until(now + bounds.idle)),
            deadline: Box::pin(tokio::time::sleep_until(now + bounds.max_duration)),
            saw_done: false,
            finished: false,
        }
    }

    /// Ends the stream with an error event the OpenAI SDKs surface as an API error.
    fn cut(&mut self, end: &'static str, code: DenyCode) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        self.finished = true;
        self.guard.end = Some((end, Some(code)));
        let mut frame = b"data: ".to_vec();
        frame.extend_from_slice(&Denial::new(code).body_bytes());
        frame.extend_from_slice(b"\n\n");
        Poll::Ready(Some(Ok(Bytes::from(frame))))
    }

    /// Looks at a chunk's complete events; returns a refusal if the stream must stop.
    fn inspect(&mut self, chunk: &[u8]) -> Result<(), DenyCode> {
        let Self { scanner, runtime, guard, saw_done, .. } = self;
        let mut blocked = None;
        let scanned = scanner.feed(chunk, |ev| match ev {
            SseEvent::Data(d) => {
                if let Some(u) = usage_from_chunk(d) {
                    guard.usage = Some(u);
                }
                if let Verdict::Deny(den) = runtime.gates.guardrails_out.check_response(&guard.cx, d) {
                    blocked = Some(den.code);
                }
            }
            SseEvent::Done => *saw_done = true,
        });
        if scanned.is_err() {
            return Err(DenyCode::UpstreamError);
        }
        blocked.map_or(Ok(()), Err)
    }
}

impl<S, E> Stream for Inspected<S>
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Display,
{
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            tracing::warn!(request_id = %this.guard.cx.request_id, "stream exceeded its maximum duration; cut");
            return this.cut("cut", DenyCode::UpstreamTimeout);
        }
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.idle_timer.as_mut().reset(Instant::now() + this.idle);
                match this.inspect(&chunk) {
                    Ok(()) => Poll::Ready(Some(Ok(chunk))),
                    Err(DenyCode::UpstreamError) => {
                        tracing::warn!(request_id = %this.guard.cx.request_id, "provider sent a malformed or oversized event; stream cut");
                        this.cut("upstream_failed", DenyCode::UpstreamError)
                    }
                    Err(code) => this.cut("blocked", code),
                }
            }
            Poll::Ready(Some(Err(e))) => {
                tracing::warn!(request_id = %this.guard.cx.request_id, error = %e, "provider stream failed");
                this.cut("upstream_failed", DenyCode::UpstreamError)
            }
            Poll::Ready(None) if this.saw_done => {
                this.finished = true;
                this.guard.end = Some(("completed", None));
                Poll::Ready(None)
            }
            Poll::Ready(None) => {
                tracing::warn!(request_id = %this.guard.cx.request_id, "provider closed the stream before [DONE]");
                this.cut("upstream_failed", DenyCode::UpstreamError)
            }
            Poll::Pending => {
                if this.idle_timer.as_mut().poll(cx).is_ready() {
                    tracing::warn!(request_id = %this.guard.cx.request_id, "provider stream went idle; cut");
                    return this.cut("upstream_timeout", DenyCode::UpstreamTimeout);
                }
                Poll::Pending
            }
        }
    }
}
