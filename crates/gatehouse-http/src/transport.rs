//! The generic transport stack both planes share, outermost first. Policy never lives here.

use std::any::Any;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use gatehouse_core::{Denial, DenyCode, RequestId};
use http::{HeaderMap, HeaderName, HeaderValue, header};
use http_body_util::BodyExt;

use crate::pace::{BodyPace, BodyTooSlow, paced};
use tower::ServiceBuilder;
use tower::util::MapRequestLayer;
use tower_http::catch_panic::CatchPanicLayer;
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

/// Every request gets a fresh id of ours; a client-sent `x-request-id` is not trusted for
/// audit correlation and is replaced.
async fn request_id(mut req: Request, next: Next) -> Response {
    let id = RequestId::generate();
    req.extensions_mut().insert(id);
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        resp.headers_mut().insert(REQUEST_ID, v);
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
/// answers 408). There is no in-flight limit here: HTTP/1 serves one request at a time per
/// connection, so the accept loop's connection bound (`serve`) already bounds requests in
/// flight, without a shared semaphore on every request.
pub fn with_transport_layers(router: Router, pace: BodyPace) -> Router {
    router.layer(
        ServiceBuilder::new()
            // outermost, so even a 500 from a panic carries the id the logs know it by
            .layer(middleware::from_fn(request_id))
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
        let app = with_transport_layers(Router::new().route("/boom", get(boom)), crate::BodyPace::default());
        let resp = app.oneshot(Request::get("/boom").body(axum::body::Body::empty()).unwrap()).await.unwrap();
        assert_eq!(resp.status(), 500);
        assert!(resp.headers().contains_key(REQUEST_ID), "the answer still carries its request id");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "internal_error");
        assert!(!String::from_utf8_lossy(&body).contains("secret-in-panic-payload"));
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
        let app = with_transport_layers(Router::new().route("/h", get(headers_debug)), crate::BodyPace::default());
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
