//! The generic transport stack both planes share, outermost first. Policy never lives here.

use std::any::Any;
use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use gatehouse_core::{Denial, DenyCode, RequestId};
use http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use http_body_util::BodyExt;

use crate::pace::{BodyPace, BodyTooSlow, paced};
use tower::ServiceBuilder;
use tower::util::MapRequestLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Reads a request body of media type `media` (parameters such as `charset` allowed), at most
/// `limit` bytes: checked on Content-Length first, then while reading, so a lying length does
/// not help. Every plane reads bodies through this one function.
pub async fn read_body(
    headers: &HeaderMap,
    body: axum::body::Body,
    media: &str,
    limit: usize,
) -> Result<Bytes, DenyCode> {
    let matches = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(media));
    if !matches {
        return Err(DenyCode::UnsupportedMediaType);
    }
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(DenyCode::RequestTooLarge);
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(DenyCode::RequestTooLarge),
        Err(e) if BodyTooSlow::caused(&*e) => Err(DenyCode::RequestTimeout),
        Err(_) => Err(DenyCode::InvalidRequest),
    }
}

fn panicked(_: Box<dyn Any + Send + 'static>) -> Response {
    // The panic payload may hold request data: it is not logged or returned.
    tracing::error!("handler panicked; answered 500");
    Denial::new(DenyCode::Internal).into_response()
}

/// Which plane a router serves: the response headers differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plane {
    /// OpenAI-, Anthropic- and MCP-compatible APIs, called by programs.
    Data,
    /// The admin API and metrics, which a browser on an operator's machine may also reach.
    Control,
}

/// Every answer of both planes: its body is what its media type says, and no shared cache may
/// keep it (prompts, completions, keys shown once). A handler's own `cache-control` stands.
const BOTH_PLANES: [(HeaderName, HeaderValue); 2] = [
    (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
];

/// The control plane's answers also may not be framed, load anything, or leak their address in
/// a referrer: it serves JSON and text, never a page (the console, when it comes, sets its own
/// policy for its pages).
const CONTROL_PLANE: [(HeaderName, HeaderValue); 3] = [
    (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'")),
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
];

/// The control plane's CORS for the origins `server.admin_cors_origins` lists (exact, as
/// browsers send them), or `None` when it lists none: then no cross-origin read is granted.
/// Admin calls carry a bearer token, so credentials (cookies) are never allowed cross-origin;
/// a browser may read the request id and `Retry-After` of an answer.
pub fn control_plane_cors(origins: &[String]) -> Option<CorsLayer> {
    let allowed: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    if allowed.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(allowed))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([REQUEST_ID, header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    )
}

/// Every request gets a fresh id of ours; a client-sent `x-request-id` is not trusted for
/// audit correlation and is replaced. The answer gets its plane's headers here too, rather
/// than in a layer of their own (this runs for every request anyway).
async fn request_id(plane: Plane, mut req: Request, next: Next) -> Response {
    let id = RequestId::generate();
    req.extensions_mut().insert(id);
    let mut resp = next.run(req).await;
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        headers.insert(REQUEST_ID, v);
    }
    let extra: &[(HeaderName, HeaderValue)] = match plane {
        Plane::Data => &[],
        Plane::Control => &CONTROL_PLANE,
    };
    for (name, value) in BOTH_PLANES.iter().chain(extra) {
        headers.entry(name).or_insert_with(|| value.clone());
    }
    resp
}

fn span(req: &Request) -> tracing::Span {
    // The route template, never the raw URI: query strings can carry secrets.
    let path = req.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
    let id = req.extensions().get::<RequestId>().map(|i| i.to_string()).unwrap_or_default();
    tracing::debug_span!("http", method = %req.method(), path, request_id = %id)
}

/// Wraps a router in the shared stack; every request body is held to `pace` (a too-slow body
/// answers 408); every answer carries `plane`'s headers. There is no in-flight limit here: HTTP/1 serves one request at a time per
/// connection, so the accept loop's connection bound (`serve`) already bounds requests in
/// flight, without a shared semaphore on every request.
pub fn with_transport_layers(router: Router, plane: Plane, pace: BodyPace) -> Router {
    router.layer(
        ServiceBuilder::new()
            // outermost, so even a 500 from a panic carries the id the logs know it by
            .layer(middleware::from_fn(move |req, next| request_id(plane, req, next)))
            // a bug must answer 500, not kill the connection task
            .layer(CatchPanicLayer::custom(panicked))
            // credentials are redacted in any header debug output from here inward
            .layer(SetSensitiveRequestHeadersLayer::new([
                header::AUTHORIZATION,
                header::PROXY_AUTHORIZATION,
                header::COOKIE,
                HeaderName::from_static("x-api-key"),
                HeaderName::from_static("api-key"),
            ]))
            // span with method, route and id: no headers, no bodies, no query
            .layer(TraceLayer::new_for_http().make_span_with(span))
            .layer(MapRequestLayer::new(move |req: Request| req.map(|b| paced(b, pace)))),
    )
}

/// On a TLS listener: a browser that has been here over HTTPS comes back only over HTTPS, for
/// a year. Subdomains and preload are the operator's domain-wide choice, so neither is claimed.
pub fn with_hsts(router: Router) -> Router {
    router.layer(middleware::map_response(|mut resp: Response| async move {
        resp.headers_mut()
            .entry(header::STRICT_TRANSPORT_SECURITY)
            .or_insert(HeaderValue::from_static("max-age=31536000"));
        resp
    }))
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    async fn boom() -> &'static str {
        if std::hint::black_box(true) {
            panic!("secret-in-panic-payload");
        }
        "never"
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_without_its_message() {
        let app =
            with_transport_layers(Router::new().route("/boom", get(boom)), Plane::Data, crate::BodyPace::default());
        let resp = app.oneshot(Request::get("/boom").body(axum::body::Body::empty()).unwrap()).await.unwrap();
        assert_eq!(resp.status(), 500);
        assert!(resp.headers().contains_key(REQUEST_ID), "the answer still carries its request id");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "internal_error");
        assert!(!String::from_utf8_lossy(&body).contains("secret-in-panic-payload"));
    }

    async fn cached() -> Response {
        ([(header::CACHE_CONTROL, "no-cache")], "event stream").into_response()
    }

    #[tokio::test]
    async fn each_plane_answers_with_its_headers_and_a_handler_keeps_its_own_cache_control() {
        let routes = || Router::new().route("/h", get(|| async { "ok" })).route("/c", get(cached));
        for plane in [Plane::Data, Plane::Control] {
            let app = with_transport_layers(routes(), plane, crate::BodyPace::default());
            for (path, cache) in [("/h", "no-store"), ("/c", "no-cache"), ("/missing", "no-store")] {
                let resp =
                    app.clone().oneshot(Request::get(path).body(axum::body::Body::empty()).unwrap()).await.unwrap();
                let h = resp.headers();
                let get = |name: HeaderName| h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                assert_eq!(get(header::X_CONTENT_TYPE_OPTIONS), "nosniff", "{plane:?} {path}");
                assert_eq!(get(header::CACHE_CONTROL), cache, "{plane:?} {path}");
                let control = [header::CONTENT_SECURITY_POLICY, header::X_FRAME_OPTIONS, header::REFERRER_POLICY];
                if plane == Plane::Control {
                    assert_eq!(get(header::CONTENT_SECURITY_POLICY), "default-src 'none'; frame-ancestors 'none'");
                    assert_eq!(get(header::X_FRAME_OPTIONS), "DENY");
                    assert_eq!(get(header::REFERRER_POLICY), "no-referrer");
                } else {
                    assert!(control.iter().all(|n| !h.contains_key(n)), "the data plane stays lean: {h:?}");
                }
            }
        }
    }

    /// What a handler (and anything it logs with `{:?}`) sees of the credential headers.
    async fn headers_debug(headers: HeaderMap) -> String {
        let marked = [header::AUTHORIZATION, header::PROXY_AUTHORIZATION, header::COOKIE]
            .iter()
            .chain(&[HeaderName::from_static("x-api-key"), HeaderName::from_static("api-key")])
            .all(|h| headers.get(h).is_some_and(HeaderValue::is_sensitive));
        format!("{marked} {headers:?}")
    }

    #[tokio::test]
    async fn credential_headers_are_marked_sensitive_before_any_handler_sees_them() {
        let app = with_transport_layers(
            Router::new().route("/h", get(headers_debug)),
            Plane::Data,
            crate::BodyPace::default(),
        );
        let secret = "sensitive-canary-51f0";
        let req = Request::get("/h")
            .header(header::AUTHORIZATION, format!("Bearer {secret}"))
            .header(header::PROXY_AUTHORIZATION, format!("Basic {secret}"))
            .header(header::COOKIE, format!("session={secret}"))
            .header("x-api-key", secret)
            .header("api-key", secret)
            .header("x-other", "visible")
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with("true "), "every credential header is marked: {text}");
        assert!(!text.contains(secret), "a debug print of the headers shows no credential: {text}");
        assert!(text.contains("visible") && text.contains("Sensitive"), "{text}");
    }
}
