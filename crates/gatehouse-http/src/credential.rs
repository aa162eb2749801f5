//! The one credential a request presents, read the same way on both planes.
//!
//! A request that carries a credential in more than one place (two `Authorization` headers,
//! a header and an `x-api-key`, two credentials joined into one header, a key in the query
//! string beside a header) is ambiguous: a proxy in front of us and the gateway could each pick a different
//! one, so it is refused (400) rather than served with whichever came first.

use gatehouse_core::Presented;
use http::{HeaderMap, HeaderName, header};
use secrecy::SecretString;

/// Longest credential we consider (capability tokens with delegations and discharges, and
/// federated JWTs, are much longer than keys); anything longer is not one of ours.
pub const MAX_CREDENTIAL_BYTES: usize = 8192;

/// Headers that clients use to carry an API credential. Only `Authorization: Bearer` (and,
/// where the plane accepts it, `x-api-key`) is read; the others only count towards ambiguity.
static HEADERS: [HeaderName; 3] =
    [header::AUTHORIZATION, HeaderName::from_static("x-api-key"), HeaderName::from_static("api-key")];

/// Query parameters that carry a credential in other APIs (RFC 6750 `access_token`, Azure's
/// and others' `api-key`). Never read as a credential (a URL ends up in logs); counted only.
const QUERY: [&str; 3] = ["access_token", "api_key", "api-key"];

/// Where a plane reads a credential from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accept {
    /// `Authorization: Bearer` only (the control plane).
    Bearer,
    /// `Authorization: Bearer` or `x-api-key` (the data plane: OpenAI's and Anthropic's SDKs).
    BearerOrApiKey,
}

/// The request's credential. A header that is present but malformed yields an empty
/// credential, which fails as an invalid one rather than as a missing one.
pub fn presented(headers: &HeaderMap, query: Option<&str>, accept: Accept) -> Presented {
    let mut places = 0usize;
    let mut found = None;
    for name in &HEADERS {
        for value in headers.get_all(name) {
            places += 1;
            found = Some((name, value));
        }
    }
    if let Some(q) = query {
        places += url::form_urlencoded::parse(q.as_bytes())
            .filter(|(k, _)| QUERY.iter().any(|c| k.eq_ignore_ascii_case(c)))
            .count();
    }
    if places > 1 {
        return Presented::Ambiguous;
    }
    let Some((name, value)) = found else {
        return Presented::Nothing;
    };
    let text = value.to_str().unwrap_or("");
    let raw = if *name == header::AUTHORIZATION {
        match text.trim().split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => "",
        }
    } else if *name == HEADERS[1] && accept == Accept::BearerOrApiKey {
        text.trim()
    } else {
        // a credential in a header this plane does not read is not a credential here
        return Presented::Nothing;
    };
    // A comma is how intermediaries join repeated headers ("Bearer a, Bearer b"). Our own
    // credentials use commas in two shapes only: a capability token with its bound discharges
    // (`root,discharge,...`: base64, no spaces) and the JSON form (an object, or an array of a
    // token and its discharges; caveats are text, like `rpm <= 60`).
    let json = (raw.starts_with('{') && raw.ends_with('}')) || (raw.starts_with('[') && raw.ends_with(']'));
    if !json && joined(raw) {
        return Presented::Ambiguous;
    }
    let malformed = raw.len() > MAX_CREDENTIAL_BYTES || (!json && raw.contains(|c: char| c.is_ascii_whitespace()));
    Presented::One(SecretString::from(if malformed { String::new() } else { raw.to_owned() }))
}

/// Whether a comma list is two credentials rather than one token with its discharges: a part
/// that carries its own scheme (`Bearer x`), or more than one API key or admin token.
fn joined(raw: &str) -> bool {
    if !raw.contains(',') {
        return false;
    }
    let parts = || raw.split(',').map(str::trim);
    parts().any(|p| p.contains(|c: char| c.is_ascii_whitespace()))
        || parts().filter(|p| p.starts_with("gth_") || p.starts_with("gtha_")).count() > 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        m
    }

    fn one(p: Presented) -> String {
        match p {
            Presented::One(s) => s.expose_secret().to_owned(),
            other => panic!("expected one credential, got {other:?}"),
        }
    }

    #[test]
    fn one_credential_in_one_place_is_read() {
        let data = Accept::BearerOrApiKey;
        assert_eq!(one(presented(&h(&[("authorization", "Bearer abc")]), None, data)), "abc");
        assert_eq!(one(presented(&h(&[("authorization", "bearer  abc ")]), None, data)), "abc");
        assert_eq!(one(presented(&h(&[("x-api-key", "xyz")]), None, data)), "xyz");
        // a capability token in its JSON form has commas and is still one credential
        let json = r#"{"c":["rpm <= 60","b"],"i":"x"}"#;
        assert_eq!(one(presented(&h(&[("authorization", &format!("Bearer {json}"))]), None, data)), json);
        // and a token with its bound discharges is one credential in its own comma form
        assert_eq!(
            one(presented(&h(&[("authorization", "Bearer AgEroot,AgEdis1,AgEdis2")]), None, data)),
            "AgEroot,AgEdis1,AgEdis2"
        );
        assert_eq!(one(presented(&h(&[("authorization", "Bearer abc")]), Some("limit=5&key=k_1"), data)), "abc");
        assert!(matches!(presented(&h(&[]), None, data), Presented::Nothing));
        assert!(matches!(presented(&h(&[("x-api-key", "xyz")]), None, Accept::Bearer), Presented::Nothing));
        assert!(matches!(presented(&h(&[("api-key", "xyz")]), None, data), Presented::Nothing));
    }

    #[test]
    fn a_malformed_credential_is_empty_so_it_fails_as_invalid() {
        let data = Accept::BearerOrApiKey;
        assert_eq!(one(presented(&h(&[("authorization", "Basic abc")]), None, data)), "");
        assert_eq!(one(presented(&h(&[("authorization", "Bearer a b")]), None, data)), "");
        assert_eq!(one(presented(&h(&[("authorization", "Bearer")]), None, data)), "");
        let long = "k".repeat(MAX_CREDENTIAL_BYTES + 1);
        assert_eq!(one(presented(&h(&[("authorization", &format!("Bearer {long}"))]), None, data)), "");
    }

    #[test]
    fn a_credential_in_two_places_is_ambiguous_on_both_planes() {
        for accept in [Accept::Bearer, Accept::BearerOrApiKey] {
            for (headers, query) in [
                (&[("authorization", "Bearer a"), ("authorization", "Bearer b")][..], None),
                (&[("authorization", "Bearer a"), ("authorization", "Bearer a")][..], None),
                (&[("authorization", "Bearer a"), ("x-api-key", "b")][..], None),
                (&[("x-api-key", "a"), ("x-api-key", "b")][..], None),
                (&[("authorization", "Bearer a"), ("api-key", "b")][..], None),
                (&[("authorization", "Bearer a, Bearer b")][..], None),
                (&[("authorization", "Bearer gth_a,gth_b")][..], None),
                (&[("authorization", "Bearer a,Bearer b")][..], None),
                (&[("authorization", "Bearer a")][..], Some("access_token=b")),
                (&[("x-api-key", "a")][..], Some("x=1&API_KEY=b")),
                (&[][..], Some("api_key=a&api%5Fkey=b")),
                (&[("authorization", "Bearer a")][..], Some("api-key")),
            ] {
                let p = presented(&h(headers), query, accept);
                assert!(matches!(p, Presented::Ambiguous), "{headers:?} {query:?} {accept:?}: {p:?}");
            }
        }
        let p = presented(&h(&[("x-api-key", "gth_a,gtha_b")]), None, Accept::BearerOrApiKey);
        assert!(matches!(p, Presented::Ambiguous), "{p:?}");
    }
}
