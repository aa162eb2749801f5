//! Gatehouse tells an upstream (a provider or an MCP server) who is calling, in headers it
//! signs, so the upstream can trust them without trusting the network:
//!
//! | header | value |
//! |---|---|
//! | `x-gatehouse-org`, `x-gatehouse-project` | tenant ids |
//! | `x-gatehouse-subject` | `key:<id>`, `capability:<id>` or `<issuer>:<subject>` |
//! | `x-gatehouse-roles` | comma-separated (federated callers; may be empty) |
//! | `x-gatehouse-request-id` | the request id (unique: the replay-cache key) |
//! | `x-gatehouse-timestamp` | Unix seconds when signed |
//! | `x-gatehouse-key-id` | which shared key signed (for rotation) |
//! | `x-gatehouse-signature` | `v1=<base64url(HMAC-SHA-256(key, canonical))>` |
//!
//! The canonical string is the lines `gatehouse-identity-v1`, method, path (with query),
//! timestamp, hex SHA-256 of the body, org, project, subject, roles, request id, key id,
//! joined with `\n`. A value containing a newline cannot be signed or verified.
//!
//! Upstream side: [`Verifier`] with the keys by id, a replay window (default 60 s either side)
//! and optionally a [`ReplayCache`] that refuses a request id seen before within the window.
//! Gatehouse strips inbound copies of these headers (it never forwards client headers).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const ORG: &str = "x-gatehouse-org";
pub const PROJECT: &str = "x-gatehouse-project";
pub const SUBJECT: &str = "x-gatehouse-subject";
pub const ROLES: &str = "x-gatehouse-roles";
pub const REQUEST_ID: &str = "x-gatehouse-request-id";
pub const TIMESTAMP: &str = "x-gatehouse-timestamp";
pub const KEY_ID: &str = "x-gatehouse-key-id";
pub const SIGNATURE: &str = "x-gatehouse-signature";
/// Every header this scheme owns (what a gateway must never pass through from a client).
pub const ALL: [&str; 8] = [ORG, PROJECT, SUBJECT, ROLES, REQUEST_ID, TIMESTAMP, KEY_ID, SIGNATURE];

/// The default replay window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
const MAX_VALUE: usize = 512;

/// Who is calling, as signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub org: String,
    pub project: String,
    pub subject: String,
    pub roles: Vec<String>,
    pub request_id: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("identity header {0} is missing or malformed")]
    Header(&'static str),
    #[error("unknown signing key id")]
    UnknownKey,
    #[error("signature does not verify")]
    BadSignature,
    #[error("timestamp is outside the replay window")]
    Stale,
    #[error("request id was seen before (replay)")]
    Replayed,
}

fn canonical(method: &str, path: &str, ts: &str, body: &[u8], id: &Identity, roles: &str, key_id: &str) -> String {
    let body_hash = hex::encode(Sha256::digest(body));
    [
        "gatehouse-identity-v1",
        method,
        path,
        ts,
        &body_hash,
        &id.org,
        &id.project,
        &id.subject,
        roles,
        &id.request_id,
        key_id,
    ]
    .join("\n")
}

#[expect(clippy::expect_used, reason = "HMAC takes keys of any length; new_from_slice cannot fail")]
fn mac(key: &[u8], msg: &str) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    m.update(msg.as_bytes());
    m.finalize().into_bytes().into()
}

fn clean(v: &str) -> bool {
    v.len() <= MAX_VALUE && !v.contains(['\n', '\r', ',']) && HeaderValue::from_str(v).is_ok()
}

/// The headers to add to an upstream request. `None` if a value cannot be carried safely
/// (a newline, a comma inside a role, or a value over 512 bytes).
pub fn sign(
    key_id: &str,
    key: &[u8],
    method: &str,
    path: &str,
    body: &[u8],
    id: &Identity,
    unix_secs: u64,
) -> Option<Vec<(HeaderName, HeaderValue)>> {
    let fields = [&id.org, &id.project, &id.subject, &id.request_id];
    if !fields.iter().all(|f| clean(f)) || !id.roles.iter().all(|r| clean(r)) || !clean(key_id) {
        return None;
    }
    let roles = id.roles.join(",");
    let ts = unix_secs.to_string();
    let sig =
        format!("v1={}", URL_SAFE_NO_PAD.encode(mac(key, &canonical(method, path, &ts, body, id, &roles, key_id))));
    let pairs = [
        (ORG, id.org.as_str()),
        (PROJECT, id.project.as_str()),
        (SUBJECT, id.subject.as_str()),
        (ROLES, roles.as_str()),
        (REQUEST_ID, id.request_id.as_str()),
        (TIMESTAMP, ts.as_str()),
        (KEY_ID, key_id),
        (SIGNATURE, sig.as_str()),
    ];
    pairs.into_iter().map(|(n, v)| Some((HeaderName::from_static(n), HeaderValue::from_str(v).ok()?))).collect()
}

/// Remembers request ids for the replay window. Bounded: the oldest entries are evicted
/// first, so size it for the requests one window can bring.
struct ReplayCache {
    seen: quick_cache::sync::Cache<String, ()>,
}

impl ReplayCache {
    /// True the first time `request_id` is offered.
    fn first_seen(&self, request_id: &str) -> bool {
        let mut first = false;
        let _ = self.seen.get_or_insert_with(&request_id.to_owned(), || {
            first = true;
            Ok::<_, ()>(())
        });
        first
    }
}

/// The upstream side: shared keys by id, the replay window and an optional replay cache.
pub struct Verifier {
    keys: std::collections::HashMap<String, Vec<u8>>,
    window: Duration,
    replay: Option<ReplayCache>,
}

impl Verifier {
    /// `keys`: key id -> shared secret (several during a rotation).
    pub fn new(keys: impl IntoIterator<Item = (String, Vec<u8>)>) -> Verifier {
        Verifier { keys: keys.into_iter().collect(), window: DEFAULT_WINDOW, replay: None }
    }

    /// How far a timestamp may be from the verifier's clock, either way.
    pub fn window(mut self, window: Duration) -> Verifier {
        self.window = window;
        self
    }

    /// Refuse a request id seen before (remembering up to `capacity` ids).
    pub fn replay_cache(mut self, capacity: usize) -> Verifier {
        self.replay = Some(ReplayCache { seen: quick_cache::sync::Cache::new(capacity) });
        self
    }

    /// Verifies a request's identity headers; `path` is the path and query as received and
    /// `unix_secs` the verifier's clock.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        method: &str,
        path: &str,
        body: &[u8],
        unix_secs: u64,
    ) -> Result<Identity, Error> {
        verify_with(headers, method, path, body, |k| self.keys.get(k).map(Vec::as_slice), unix_secs, self.window)
            .and_then(|id| match &self.replay {
                Some(c) if !c.first_seen(&id.request_id) => Err(Error::Replayed),
                _ => Ok(id),
            })
    }
}

fn header<'a>(h: &'a HeaderMap, name: &'static str) -> Result<&'a str, Error> {
    let mut values = h.get_all(name).iter();
    let v = values.next().ok_or(Error::Header(name))?;
    if values.next().is_some() {
        return Err(Error::Header(name));
    }
    let s = v.to_str().map_err(|_| Error::Header(name))?;
    if s.len() > MAX_VALUE * 4 {
        return Err(Error::Header(name));
    }
    Ok(s)
}

fn verify_with<'k>(
    headers: &HeaderMap,
    method: &str,
    path: &str,
    body: &[u8],
    keys: impl Fn(&str) -> Option<&'k [u8]>,
    unix_secs: u64,
    window: Duration,
) -> Result<Identity, Error> {
    let key_id = header(headers, KEY_ID)?;
    let key = keys(key_id).ok_or(Error::UnknownKey)?;
    let ts = header(headers, TIMESTAMP)?;
    let t: u64 = ts.parse().map_err(|_| Error::Header(TIMESTAMP))?;
    let roles = header(headers, ROLES)?;
    let id = Identity {
        org: header(headers, ORG)?.to_owned(),
        project: header(headers, PROJECT)?.to_owned(),
        subject: header(headers, SUBJECT)?.to_owned(),
        roles: if roles.is_empty() { Vec::new() } else { roles.split(',').map(str::to_owned).collect() },
        request_id: header(headers, REQUEST_ID)?.to_owned(),
    };
    let sig = header(headers, SIGNATURE)?.strip_prefix("v1=").ok_or(Error::Header(SIGNATURE))?;
    let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| Error::Header(SIGNATURE))?;
    let want = mac(key, &canonical(method, path, ts, body, &id, roles, key_id));
    if !bool::from(want.as_slice().ct_eq(&sig)) {
        return Err(Error::BadSignature);
    }
    if t.abs_diff(unix_secs) > window.as_secs() {
        return Err(Error::Stale);
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"a shared secret of enough length";

    fn id() -> Identity {
        Identity {
            org: "0190a5c4-0000-7000-8000-000000000001".into(),
            project: "0190a5c4-0000-7000-8000-000000000002".into(),
            subject: "op:ci-runner".into(),
            roles: vec!["inference".into(), "chatter".into()],
            request_id: "0190a5c4-0000-7000-8000-000000000003".into(),
        }
    }

    fn signed(at: u64) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in sign("k1", KEY, "POST", "/v1/chat/completions", b"{\"a\":1}", &id(), at).unwrap() {
            h.insert(n, v);
        }
        h
    }

    fn v() -> Verifier {
        Verifier::new([("k1".to_owned(), KEY.to_vec())])
    }

    #[test]
    fn signed_headers_verify_and_every_field_is_covered() {
        let h = signed(1_000);
        assert_eq!(v().verify(&h, "POST", "/v1/chat/completions", b"{\"a\":1}", 1_010), Ok(id()));
        assert_eq!(v().verify(&h, "GET", "/v1/chat/completions", b"{\"a\":1}", 1_010), Err(Error::BadSignature));
        assert_eq!(v().verify(&h, "POST", "/v1/embeddings", b"{\"a\":1}", 1_010), Err(Error::BadSignature));
        assert_eq!(v().verify(&h, "POST", "/v1/chat/completions", b"{\"a\":2}", 1_010), Err(Error::BadSignature));
        for name in [ORG, PROJECT, SUBJECT, ROLES, REQUEST_ID, TIMESTAMP] {
            let mut t = h.clone();
            t.insert(name, HeaderValue::from_static("1"));
            assert_eq!(
                v().verify(&t, "POST", "/v1/chat/completions", b"{\"a\":1}", 1_010),
                Err(Error::BadSignature),
                "{name}"
            );
        }
        let mut other_key = h.clone();
        other_key.insert(KEY_ID, HeaderValue::from_static("k2"));
        assert_eq!(v().verify(&other_key, "POST", "/v1/chat/completions", b"{\"a\":1}", 1_010), Err(Error::UnknownKey));
        let mut twice = h.clone();
        twice.append(SUBJECT, HeaderValue::from_static("x"));
        assert_eq!(
            v().verify(&twice, "POST", "/v1/chat/completions", b"{\"a\":1}", 1_010),
            Err(Error::Header(SUBJECT))
        );
    }

    #[test]
    fn outside_the_window_or_replayed_fails() {
        let h = signed(1_000);
        let body = b"{\"a\":1}";
        assert_eq!(v().verify(&h, "POST", "/v1/chat/completions", body, 1_061), Err(Error::Stale));
        assert_eq!(v().verify(&h, "POST", "/v1/chat/completions", body, 939), Err(Error::Stale));
        let cached = v().replay_cache(1000);
        assert!(cached.verify(&h, "POST", "/v1/chat/completions", body, 1_001).is_ok());
        assert_eq!(cached.verify(&h, "POST", "/v1/chat/completions", body, 1_002), Err(Error::Replayed));
        let narrow = v().window(Duration::from_secs(5));
        assert_eq!(narrow.verify(&h, "POST", "/v1/chat/completions", body, 1_006), Err(Error::Stale));
    }

    #[test]
    fn values_that_cannot_be_carried_are_refused() {
        let mut bad = id();
        bad.subject = "a\nb".into();
        assert!(sign("k1", KEY, "POST", "/", b"", &bad, 1).is_none());
        let mut comma = id();
        comma.roles = vec!["a,b".into()];
        assert!(sign("k1", KEY, "POST", "/", b"", &comma, 1).is_none());
    }
}
