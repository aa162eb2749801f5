//! Request bodies arrive in bounded time. Hyper bounds how long headers may take; nothing
//! bounds the body, so a client that trickles one byte at a time holds a connection (and a
//! concurrency slot) for as long as it likes. Every request body is wrapped here: it must be
//! complete within `deadline`, and after a short grace it must keep up `min_bytes_per_second`.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// Time a body gets before the minimum rate applies (connection set-up, a slow first write).
pub const RATE_GRACE: Duration = Duration::from_secs(1);

/// How fast a request body must arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyPace {
    /// The whole body must have arrived this long after the handler started reading it.
    pub deadline: Duration,
    /// After [`RATE_GRACE`], at least this many bytes per second on average; 0 turns the rate
    /// check off (the deadline still holds).
    pub min_bytes_per_second: u32,
}

impl Default for BodyPace {
    fn default() -> Self {
        BodyPace { deadline: Duration::from_secs(30), min_bytes_per_second: 1024 }
    }
}

/// The error a paced body ends with when the client is too slow; [`crate::read_body`] answers
/// it with 408.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not received in time")]
pub struct BodyTooSlow;

impl BodyTooSlow {
    /// Whether `e`, or anything it wraps, is a pacing timeout.
    pub fn caused(e: &(dyn std::error::Error + 'static)) -> bool {
        let mut cur = Some(e);
        while let Some(err) = cur {
            if err.is::<BodyTooSlow>() {
                return true;
            }
            cur = err.source();
        }
        false
    }
}

/// Wraps `body` so it fails with [`BodyTooSlow`] when it falls behind `pace`.
pub fn paced(body: Body, pace: BodyPace) -> Body {
    Body::new(Paced { inner: body, pace, start: None, received: 0, timer: None, expired: false })
}

struct Paced {
    inner: Body,
    pace: BodyPace,
    /// Set on the first poll: a handler that never reads the body is not timed.
    start: Option<Instant>,
    received: u64,
    /// Created only when the client makes us wait, so a body already buffered costs no timer.
    timer: Option<Pin<Box<Sleep>>>,
    expired: bool,
}

impl Paced {
    /// The instant by which the next frame must arrive: the overall deadline, or sooner when
    /// the bytes so far only "pay for" less time at the minimum rate.
    fn due(&self, start: Instant) -> Instant {
        let total = start + self.pace.deadline;
        if self.pace.min_bytes_per_second == 0 {
            return total;
        }
        let earned = Duration::from_secs_f64(self.received as f64 / f64::from(self.pace.min_bytes_per_second));
        total.min(start + RATE_GRACE + earned)
    }
}

impl http_body::Body for Paced {
    type Data = Bytes;
    type Error = axum::Error;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if this.expired {
            return Poll::Ready(Some(Err(axum::Error::new(BodyTooSlow))));
        }
        let start = *this.start.get_or_insert_with(Instant::now);
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.received += d.len() as u64;
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(other) => return Poll::Ready(other),
            Poll::Pending => {}
        }
        let due = this.due(start);
        let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        if timer.deadline() != due {
            timer.as_mut().reset(due);
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.expired = true;
                Poll::Ready(Some(Err(axum::Error::new(BodyTooSlow))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body that yields one byte every `every`, `chunks` times, from a real timer.
    fn trickle(every: Duration, chunks: usize) -> Body {
        let s = futures_util::stream::unfold(0, move |n| async move {
            if n == chunks {
                return None;
            }
            tokio::time::sleep(every).await;
            Some((Ok::<_, std::io::Error>(Bytes::from_static(b"x")), n + 1))
        });
        Body::from_stream(s)
    }

    #[tokio::test]
    async fn a_trickle_below_the_rate_fails_soon_after_the_grace() {
        let pace = BodyPace { deadline: Duration::from_secs(60), min_bytes_per_second: 100 };
        let started = Instant::now();
        let err = paced(trickle(Duration::from_millis(200), 1000), pace).collect().await.err().unwrap();
        assert!(BodyTooSlow::caused(&err));
        // 1 s of grace plus 10 ms per byte earned: far below the 60 s deadline
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn the_deadline_holds_even_without_a_rate() {
        let pace = BodyPace { deadline: Duration::from_millis(600), min_bytes_per_second: 0 };
        let started = Instant::now();
        let err = paced(trickle(Duration::from_millis(50), 1000), pace).collect().await.err().unwrap();
        assert!(BodyTooSlow::caused(&err));
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(600) && took < Duration::from_secs(20), "{took:?}");
    }

    #[tokio::test]
    async fn a_body_that_keeps_up_is_read_whole() {
        let pace = BodyPace { deadline: Duration::from_secs(60), min_bytes_per_second: 2 };
        // about 20 bytes per second against a floor of 2
        let body = paced(trickle(Duration::from_millis(50), 40), pace).collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 40);
    }

    #[tokio::test]
    async fn a_buffered_body_passes_untimed() {
        let pace = BodyPace { deadline: Duration::from_millis(1), min_bytes_per_second: u32::MAX };
        let body = paced(Body::from("hello"), pace).collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello");
    }
}
