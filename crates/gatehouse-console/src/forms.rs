//! Forms: read bounded, and accepted only from this origin with the session's synchronizer
//! token. Two independent defences against cross-site request forgery: a browser names the
//! page that sent a request in `Origin` (and `Sec-Fetch-Site`), which another site cannot
//! forge; and another site cannot read the token, which only this origin's pages carry.

use axum::body::Body;
use axum::extract::Request;
use gatehouse_core::{Denial, DenyCode};
use gatehouse_security::opaque_eq;
use http::{HeaderMap, HeaderName, header};
use serde::de::DeserializeOwned;

use crate::session::Signed;

/// The largest form the console takes (its biggest form is a key's name and a few fields).
const MAX_FORM: usize = 16 * 1024;

const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Whether a state-changing request came from a page of this origin. A browser sends `Origin`
/// on every POST; when it does, it must name this host. `Sec-Fetch-Site`, when sent, must say
/// `same-origin` (or `none`: typed by the user). A request with neither is not from a browser,
/// and without the session cookie a non-browser caller has nothing to forge.
pub fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get(SEC_FETCH_SITE)
        && !matches!(site.as_bytes(), b"same-origin" | b"none")
    {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else { return false };
    let Ok(origin) = origin.to_str() else { return false };
    match origin.split_once("://") {
        Some(("http" | "https", authority)) => authority.eq_ignore_ascii_case(host),
        _ => false,
    }
}

/// A form body as `T` (`application/x-www-form-urlencoded`, at most 16 KiB, unknown fields
/// refused).
pub async fn read_form<T: DeserializeOwned>(headers: &HeaderMap, body: Body) -> Result<T, Denial> {
    let bytes = gatehouse_http::read_body(headers, body, "application/x-www-form-urlencoded", MAX_FORM)
        .await
        .map_err(Denial::new)?;
    serde_urlencoded::from_bytes(&bytes).map_err(|_| Denial::new(DenyCode::InvalidRequest))
}

/// A signed-in form: same origin, bounded, and carrying this session's token (`csrf` reads it
/// from the form). A failure is `permission_denied`.
pub async fn accept<T: DeserializeOwned>(w: &Signed, req: Request, csrf: impl Fn(&T) -> &str) -> Result<T, Denial> {
    let (parts, body) = req.into_parts();
    if !same_origin(&parts.headers) {
        return Err(Denial::new(DenyCode::PermissionDenied));
    }
    let form: T = read_form(&parts.headers, body).await?;
    if !opaque_eq(csrf(&form), &w.csrf) {
        return Err(Denial::new(DenyCode::PermissionDenied));
    }
    Ok(form)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_this_origin_may_post() {
        let host = ("host", "127.0.0.1:8081");
        assert!(same_origin(&headers(&[host, ("origin", "http://127.0.0.1:8081")])));
        assert!(same_origin(&headers(&[
            host,
            ("origin", "https://127.0.0.1:8081"),
            ("sec-fetch-site", "same-origin")
        ])));
        assert!(same_origin(&headers(&[host])));
        for bad in [
            vec![host, ("origin", "http://evil.example")],
            vec![host, ("origin", "http://127.0.0.1:8082")],
            vec![host, ("origin", "null")],
            vec![host, ("origin", "http://127.0.0.1:8081.evil.example")],
            vec![host, ("sec-fetch-site", "cross-site")],
            vec![host, ("sec-fetch-site", "same-site"), ("origin", "http://127.0.0.1:8081")],
            vec![("origin", "http://127.0.0.1:8081")],
        ] {
            assert!(!same_origin(&headers(&bad)), "{bad:?}");
        }
    }
}
