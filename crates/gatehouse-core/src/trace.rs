//! W3C Trace Context (`traceparent`) for one request: continued from the caller when it sent
//! a valid header, else a new trace; ids chosen when the request arrives so the provider can
//! be told its parent before any span exists. Only the version-00 format is produced; a header
//! we cannot read exactly starts a new trace (the spec's rule), it is never an error.

/// Ids of one request's trace. Present only while tracing is on (`[telemetry]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// The caller's span, when it sent a valid `traceparent`: our server span's parent.
    pub parent: Option<[u8; 8]>,
    /// The gateway's span for the whole request.
    pub span: [u8; 8],
    /// The span of the `provider` step: the parent a provider is told about.
    pub provider_span: [u8; 8],
    /// The caller's sampling decision (sampled when it sent none).
    pub sampled: bool,
    /// Whether providers are sent a `traceparent` (`[telemetry] propagate_trace_context`).
    pub propagate: bool,
}

/// A `traceparent` value as sent: at most this long is looked at (version 00 is 55 bytes;
/// later versions may append fields).
const MAX_HEADER: usize = 512;

impl TraceContext {
    /// A request's trace: the caller's (`incoming`, the `traceparent` header's bytes) when it
    /// parses, else a new one.
    pub fn start(incoming: Option<&[u8]>, propagate: bool) -> TraceContext {
        let [a, b] = random_pair();
        let (trace_id, parent, sampled) = match incoming.and_then(parse) {
            Some((trace, parent, flags)) => (trace, Some(parent), flags & 1 == 1),
            None => (uuid::Uuid::new_v4().into_bytes(), None, true),
        };
        TraceContext { trace_id, parent, span: a, provider_span: b, sampled, propagate }
    }

    /// The `traceparent` to send a provider, if propagation is on: our trace, the `provider`
    /// step's span as the parent, the caller's sampling flag.
    pub fn for_provider(&self) -> Option<String> {
        self.propagate.then(|| {
            format!(
                "00-{}-{}-{}",
                hex::encode(self.trace_id),
                hex::encode(self.provider_span),
                if self.sampled { "01" } else { "00" }
            )
        })
    }
}

/// Two non-zero 8-byte span ids from one v4 UUID's randomness.
fn random_pair() -> [[u8; 8]; 2] {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut out = [[0u8; 8]; 2];
    for (i, half) in out.iter_mut().enumerate() {
        half.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
        // a v4 UUID has fixed version bits, so a half is never all zero; kept explicit anyway
        if *half == [0; 8] {
            half[7] = 1;
        }
    }
    out
}

/// `version-traceid-parentid-flags`, per W3C Trace Context level 1: lower-case hex, trace and
/// parent ids not all zero, version `ff` invalid; a version other than 00 may carry more fields
/// after the flags (ignored), version 00 may not.
pub fn parse(header: &[u8]) -> Option<([u8; 16], [u8; 8], u8)> {
    if header.len() > MAX_HEADER {
        return None;
    }
    let s = std::str::from_utf8(header).ok()?.trim_matches([' ', '\t']);
    let mut parts = s.split('-');
    let version = parts.next()?;
    let (trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?);
    let rest = parts.next();
    if version.len() != 2 || version == "ff" || (version == "00" && rest.is_some()) {
        return None;
    }
    unhex::<1>(version)?;
    let trace = unhex::<16>(trace)?;
    let parent = unhex::<8>(parent)?;
    let [flags] = unhex::<1>(flags)?;
    if trace == [0; 16] || parent == [0; 8] {
        return None;
    }
    Some((trace, parent, flags))
}

/// Exactly `N` bytes of lower-case hex (the spec refuses upper case).
fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if !s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex::encode as hex;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_continued_and_told_to_the_provider_under_our_span() {
        let t = TraceContext::start(Some(GOOD.as_bytes()), true);
        assert_eq!(hex(t.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent.map(hex).as_deref(), Some("00f067aa0ba902b7"));
        assert!(t.sampled && t.span != t.provider_span);
        let sent = t.for_provider().unwrap();
        assert_eq!(sent, format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", hex(t.provider_span)));
        assert_eq!(parse(sent.as_bytes()).map(|p| p.1), Some(t.provider_span));
        // not sampled by the caller: not sampled downstream either; propagation off: nothing sent
        let t = TraceContext::start(Some(GOOD.replace("-01", "-00").as_bytes()), true);
        assert!(t.for_provider().unwrap().ends_with("-00"));
        assert_eq!(TraceContext::start(Some(GOOD.as_bytes()), false).for_provider(), None);
    }

    #[test]
    fn anything_else_starts_a_new_trace() {
        let long = format!("01-{}-{}-01-{}", "a".repeat(32), "b".repeat(16), "x".repeat(600));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", // no flags
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", // 00 takes no more
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // invalid version
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero parent
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // upper case
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", // short
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g", // not hex
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            long.as_str(),
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad}");
            let t = TraceContext::start(Some(bad.as_bytes()), true);
            assert!(t.parent.is_none() && t.trace_id != [0; 16] && t.sampled, "{bad}");
        }
        assert!(parse(&[0xff, 0xfe]).is_none());
        // a later version's extra fields are allowed and ignored
        let v1 = format!("01-{}-{}-01-what-ever", "a".repeat(32), "b".repeat(16));
        assert!(parse(v1.as_bytes()).is_some());
        // fresh traces differ
        let (a, b) = (TraceContext::start(None, false), TraceContext::start(None, false));
        assert_ne!(a.trace_id, b.trace_id);
        assert_ne!(a.span, b.span);
    }
}
