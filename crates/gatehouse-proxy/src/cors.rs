//! CORS on the data plane, per project (docs/SECURITY.md, "Browser apps"). Off unless a project
//! lists origins (`cors_origins`), and then exact origins only: never `*`, never
//! `Access-Control-Allow-Credentials` (credentials here are bearer keys, not cookies).
//!
//! A preflight carries no credential, so it cannot be answered per project: it is answered for
//! any origin some enabled project lists (the union, reloaded every [`RELOAD_EVERY`]). That only
//! lets the browser send the request; whether the page may *read* the answer is decided on the
//! answer itself, by the project of the credential that made the request. An answer from before
//! the credential is known (a missing or invalid key) carries no grant.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use gatehouse_core::{Denial, DenyCode};
use gatehouse_store::Store;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

/// How often the union of projects' origins is re-read (a change shows within this).
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);
/// Bounds on what a preflight may ask for, echoed back.
const MAX_REQUEST_HEADERS: usize = 1024;
const EXPOSED: &str = "x-request-id, retry-after, x-gatehouse-cache, x-ratelimit-limit-requests, \
     x-ratelimit-remaining-requests, x-ratelimit-reset-requests, x-ratelimit-limit-tokens, \
     x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens";

/// Every origin some enabled project allows.
#[derive(Default)]
pub struct CorsOrigins {
    origins: ArcSwap<Vec<Box<str>>>,
}

impl CorsOrigins {
    pub async fn reload(&self, store: &Store) -> Result<(), gatehouse_store::Error> {
        let all = store.project_cors_origins().await?;
        self.origins.store(Arc::new(all.into_iter().map(String::into_boxed_str).collect()));
        Ok(())
    }

    /// Keeps the union fresh; a failed read keeps the last one.
    pub async fn run_reloader(self: Arc<Self>, store: Store) {
        let mut tick = tokio::time::interval(RELOAD_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.reload(&store).await {
                tracing::warn!(error = %e, "cannot re-read projects' CORS origins; keeping the last ones");
            }
        }
    }

    fn lists(&self, origin: &[u8]) -> bool {
        gatehouse_core::lists_origin(&self.origins.load(), origin)
    }
}

/// Answers a CORS preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) to a
/// data-plane path. Routed as the paths' `OPTIONS` method, so other requests never pass here.
pub async fn preflight(State(app): State<crate::AppState>, h: HeaderMap) -> Response {
    let (Some(origin), Some(_)) = (h.get(header::ORIGIN), h.get(header::ACCESS_CONTROL_REQUEST_METHOD)) else {
        return Denial::new(DenyCode::MethodNotAllowed).into_response();
    };
    let mut resp = if app.services.cors.lists(origin.as_bytes()) {
        let mut resp = StatusCode::NO_CONTENT.into_response();
        let out = resp.headers_mut();
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
        if let Some(asked) = requested_headers(&h) {
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked);
        }
        out.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        resp
    } else {
        Denial::new(DenyCode::PermissionDenied).into_response()
    };
    resp.headers_mut().insert(
        header::VARY,
        HeaderValue::from_static("origin, access-control-request-method, access-control-request-headers"),
    );
    resp
}

/// The headers a preflight asks for, if they are a plain, bounded list of header names.
fn requested_headers(h: &HeaderMap) -> Option<HeaderValue> {
    let v = h.get(header::ACCESS_CONTROL_REQUEST_HEADERS)?;
    let plain = v.len() <= MAX_REQUEST_HEADERS
        && v.to_str().is_ok_and(|s| s.split(',').all(|n| HeaderName::from_bytes(n.trim().as_bytes()).is_ok()));
    plain.then(|| v.clone())
}

/// The request's `Origin`, if a browser sent one.
pub fn origin_of(h: &HeaderMap) -> Option<HeaderValue> {
    h.get(header::ORIGIN).cloned()
}

/// Lets the page at `origin` read `resp` if `allowed`, and marks the answer as varying by
/// origin either way.
pub fn answer(resp: &mut Response, origin: Option<HeaderValue>, allowed: bool) {
    let Some(origin) = origin else { return };
    let out = resp.headers_mut();
    out.append(header::VARY, HeaderValue::from_static("origin"));
    if allowed {
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        out.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED));
    }
}
