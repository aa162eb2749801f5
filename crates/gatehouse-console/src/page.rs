//! The page frame every console answer shares: headers (a strict CSP: scripts and styles only
//! from `/assets`, no inline code, forms only to this origin, never framed), the navigation,
//! refusals explained, and the embedded assets.

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use gatehouse_core::{Denial, DenyCode};
use http::{HeaderName, HeaderValue, StatusCode, header};
use maud::{DOCTYPE, Markup, html};

use crate::session::Signed;

pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// `Referrer-Policy: same-origin`, not the control plane's `no-referrer`: under `no-referrer`
/// a browser sends `Origin: null` with the page's own form posts, and the same-origin check of
/// every form (docs/CONSOLE.md) needs the real origin. Other sites still get no referrer.
const PAGE_HEADERS: [(HeaderName, &str); 5] = [
    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
    (header::CONTENT_SECURITY_POLICY, CSP),
    (header::REFERRER_POLICY, "same-origin"),
    (HeaderName::from_static("cross-origin-opener-policy"), "same-origin"),
    (HeaderName::from_static("cross-origin-resource-policy"), "same-origin"),
];

/// A whole page: the frame around `main`.
pub fn render(status: StatusCode, title: &str, who: Option<&Signed>, main: Markup) -> Response {
    let doc = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Gatehouse" }
                link rel="icon" href="/assets/favicon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    a.brand href="/" { "Gatehouse" }
                    @if let Some(w) = who {
                        nav aria-label="Main" {
                            ul {
                                li { a href="/" { "Overview" } }
                                li { a href="/orgs" { "Organizations" } }
                                li { a href="/keys" { "API keys" } }
                                li { a href="/usage" { "Usage" } }
                                li { a href="/sessions" { "Sessions" } }
                                @if w.may_manage_tokens() { li { a href="/tokens" { "Admin tokens" } } }
                                li { a href="/capabilities" { "Capabilities" } }
                                @if w.may_manage_providers() { li { a href="/providers" { "Providers" } } }
                                @if w.may_read_audit() { li { a href="/webhooks" { "Webhooks" } } }
                                li { a href="/account" { "Account" } }
                                @if w.may_read_audit() { li { a href="/audit" { "Audit" } } }
                            }
                        }
                        form.signout method="post" action="/sign-out" {
                            input type="hidden" name="csrf" value=(w.csrf);
                            span.who { (w.op.role.as_str()) }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (main)
                }
            }
        }
    };
    let mut resp = (status, doc.into_string()).into_response();
    for (name, value) in PAGE_HEADERS {
        resp.headers_mut().insert(name, HeaderValue::from_static(value));
    }
    resp
}

/// What a refusal means to a person at the console (the API's wording speaks to programs).
fn explain(code: DenyCode) -> &'static str {
    match code {
        DenyCode::MissingCredentials | DenyCode::InvalidToken | DenyCode::ExpiredCredential => {
            "Your session has ended or the credential was not accepted. Sign in again."
        }
        DenyCode::PermissionDenied => {
            "Your role does not allow this. Ask an administrator of your organization if you need it."
        }
        DenyCode::NotFound => "There is nothing here, or it belongs to an organization you cannot see.",
        DenyCode::InvalidRequest | DenyCode::InvalidJson | DenyCode::RequestTooComplex => {
            "Something in the form is not valid. Check the highlighted field and try again."
        }
        DenyCode::RateLimitExceeded => "Too many attempts. Wait a little and try again.",
        DenyCode::Unavailable => "A store the gateway needs is not answering. Try again shortly.",
        other => other.row().message,
    }
}

/// A refusal as a page: the code (what the audit trail and the API call it), and what it means.
pub fn refusal(d: &Denial, who: Option<&Signed>) -> Response {
    let status = StatusCode::from_u16(d.code.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let main = html! {
        div.refusal role="alert" {
            p { (explain(d.code)) }
            p.code { "Code: " code { (d.code.as_str()) } @if let Some(p) = d.param { " · field: " code { (p) } } }
        }
        p { a href="/" { "Back to the overview" } }
    };
    let mut resp = render(status, "Not done", who, main);
    if let Some(secs) = d.retry_after_secs {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

pub async fn not_found() -> Response {
    refusal(&Denial::new(DenyCode::NotFound), None)
}

const CSS: &str = include_str!("../assets/console.css");
const JS: &str = include_str!("../assets/console.js");
const ICON: &str = include_str!("../assets/favicon.svg");

pub async fn asset(Path(name): Path<String>) -> Response {
    let (body, media) = match name.as_str() {
        "console.css" => (CSS, "text/css; charset=utf-8"),
        "console.js" => (JS, "text/javascript; charset=utf-8"),
        "favicon.svg" => (ICON, "image/svg+xml"),
        _ => return not_found().await,
    };
    ([(header::CONTENT_TYPE, media), (header::CACHE_CONTROL, "max-age=3600")], body).into_response()
}

/// A short answer that sends the browser elsewhere after a form (303: the next request is a GET).
pub fn see_other(to: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// Milliseconds since the epoch as UTC `YYYY-MM-DD HH:MM`.
pub fn when(ms: i64) -> String {
    let Ok(ms) = u64::try_from(ms) else { return String::new() };
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    let s = humantime::format_rfc3339_seconds(t).to_string();
    s.get(..16).map_or(s.clone(), |d| format!("{} UTC", d.replace('T', " ")))
}
