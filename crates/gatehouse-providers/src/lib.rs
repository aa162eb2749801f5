//! What Gatehouse understands of provider traffic, and nothing more: the few request fields
//! the gates need (model, stream, message count) with everything else carried through
//! untouched; usage figures from responses; an incremental, bounded SSE scanner; and the
//! built-in `mock` provider that makes the quick start work offline.
//!
//! Pure: no I/O, no clocks beyond what callers pass in. Every parser here is bounded and
//! must never panic on input.

pub mod chat;
mod depth;
mod error;
pub mod mock;
mod request;
mod sse;
mod usage;

pub use depth::check_depth;
pub use error::Error;
pub use request::{ApiRequest, Endpoint, RequestBounds};
pub use sse::{SseEvent, SseScanner};
pub use usage::{Usage, usage_from_body, usage_from_chunk};

/// A stored AWS credential for a SigV4-signed provider (Bedrock), as the admin API takes it:
/// `<access key id>:<secret access key>`, or with `:<session token>`. `None` when it is not one.
pub fn aws_credential(value: &str) -> Option<(&str, &str, Option<&str>)> {
    let mut parts = value.split(':');
    let (id, secret, token) = (parts.next()?, parts.next()?, parts.next());
    let ok = |s: &str| !s.is_empty() && s.len() <= 4096 && s.bytes().all(|b| b.is_ascii_graphic());
    let id_ok = (16..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric());
    (parts.next().is_none() && id_ok && ok(secret) && token.is_none_or(ok)).then_some((id, secret, token))
}

#[cfg(test)]
mod aws_credential_tests {
    #[test]
    fn a_stored_aws_credential_is_an_id_a_secret_and_maybe_a_session_token() {
        let id = "AKIAIOSFODNN7EXAMPLE";
        assert_eq!(super::aws_credential(&format!("{id}:wJalr/K7+MDENG")), Some((id, "wJalr/K7+MDENG", None)));
        assert_eq!(super::aws_credential(&format!("{id}:s:tok")), Some((id, "s", Some("tok"))));
        for bad in
            ["", "sk-openai-style-key", "short:secret", &format!("{id}:"), &format!("{id}:a:b:c"), &format!("{id}:a b")]
        {
            assert_eq!(super::aws_credential(bad), None, "{bad}");
        }
    }
}
