//! The data plane's router on an ephemeral port, against a real fake provider over HTTP.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness code: a failed setup must fail the test loudly"
)]

mod trail;
