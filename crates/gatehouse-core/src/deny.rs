//! The one refusal table. Every way Gatehouse says "no" is a [`DenyCode`]; each code maps
//! to exactly one status, one OpenAI error `type`, one `code` string and one fixed message.
//! Messages are static on purpose: a refusal never echoes a credential, a prompt or an
//! upstream error text.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

/// Every refusal Gatehouse can produce. Adding a variant forces a row in [`DenyCode::row`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DenyCode {
    MissingCredentials,
    AmbiguousCredentials,
    InvalidApiKey,
    InvalidToken,
    ExpiredCredential,
    PermissionDenied,
    ModelNotFound,
    NotFound,
    MethodNotAllowed,
    InvalidRequest,
    InvalidJson,
    UnsupportedMediaType,
    RequestTooLarge,
    RequestTooComplex,
    RequestTimeout,
    HostNotAllowed,
    ContentBlocked,
    RateLimitExceeded,
    InsufficientQuota,
    Unavailable,
    UpstreamRejected,
    UpstreamRateLimited,
    UpstreamError,
    UpstreamTimeout,
    Internal,
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    pub status: u16,
    pub error_type: &'static str,
    pub code: &'static str,
    pub message: &'static str,
}

const fn row(status: u16, error_type: &'static str, code: &'static str, message: &'static str) -> Row {
    Row { status, error_type, code, message }
}

impl DenyCode {
    /// Every code, for tests that walk the whole table.
    pub const ALL: [DenyCode; 25] = [
        DenyCode::MissingCredentials,
        DenyCode::AmbiguousCredentials,
        DenyCode::InvalidApiKey,
        DenyCode::InvalidToken,
        DenyCode::ExpiredCredential,
        DenyCode::PermissionDenied,
        DenyCode::ModelNotFound,
        DenyCode::NotFound,
        DenyCode::MethodNotAllowed,
        DenyCode::InvalidRequest,
        DenyCode::InvalidJson,
        DenyCode::UnsupportedMediaType,
        DenyCode::RequestTooLarge,
        DenyCode::RequestTooComplex,
        DenyCode::RequestTimeout,
        DenyCode::HostNotAllowed,
        DenyCode::ContentBlocked,
        DenyCode::RateLimitExceeded,
        DenyCode::InsufficientQuota,
        DenyCode::Unavailable,
        DenyCode::UpstreamRejected,
        DenyCode::UpstreamRateLimited,
        DenyCode::UpstreamError,
        DenyCode::UpstreamTimeout,
        DenyCode::Internal,
    ];

    /// The table. No wildcard arm: a new code does not compile without its row.
    pub const fn row(self) -> Row {
        use DenyCode::*;
        match self {
            MissingCredentials => row(
                401,
                "authentication_error",
                "missing_credentials",
                "no credential was provided; send an API key as 'Authorization: Bearer <key>'",
            ),
            AmbiguousCredentials => row(
                400,
                "invalid_request_error",
                "invalid_request",
                "the request carries more than one credential; send exactly one",
            ),
            InvalidApiKey => row(401, "authentication_error", "invalid_api_key", "the API key is not valid"),
            InvalidToken => row(401, "authentication_error", "invalid_token", "the token is not valid"),
            ExpiredCredential => row(401, "authentication_error", "expired_token", "the credential has expired"),
            PermissionDenied => row(
                403,
                "permission_error",
                "permission_denied",
                "this credential is not permitted to perform the request",
            ),
            ModelNotFound => row(
                404,
                "invalid_request_error",
                "model_not_found",
                "the model does not exist or this credential may not use it",
            ),
            NotFound => row(404, "invalid_request_error", "not_found", "the requested resource does not exist"),
            MethodNotAllowed => {
                row(405, "invalid_request_error", "method_not_allowed", "the method is not allowed on this resource")
            }
            InvalidRequest => row(400, "invalid_request_error", "invalid_request", "the request is not valid"),
            InvalidJson => row(400, "invalid_request_error", "invalid_request", "the request body is not valid JSON"),
            UnsupportedMediaType => row(
                415,
                "invalid_request_error",
                "invalid_request",
                "the request body must be sent as 'Content-Type: application/json'",
            ),
            RequestTooLarge => row(
                413,
                "invalid_request_error",
                "request_too_large",
                "the request body is larger than this gateway accepts",
            ),
            RequestTooComplex => row(
                400,
                "invalid_request_error",
                "request_too_large",
                "the request exceeds the gateway's limits on nesting depth or item count",
            ),
            RequestTimeout => {
                row(408, "invalid_request_error", "request_timeout", "the request body was not received in time")
            }
            HostNotAllowed => row(
                421,
                "invalid_request_error",
                "host_not_allowed",
                "this Host is not served here; add it to server.admin_allowed_hosts",
            ),
            ContentBlocked => {
                row(400, "invalid_request_error", "content_blocked", "the request was blocked by a content policy")
            }
            RateLimitExceeded => row(
                429,
                "rate_limit_error",
                "rate_limit_exceeded",
                "rate limit exceeded; retry after the time given in 'Retry-After'",
            ),
            InsufficientQuota => {
                row(429, "insufficient_quota", "insufficient_quota", "the budget for this credential is exhausted")
            }
            Unavailable => row(
                503,
                "server_error",
                "unavailable",
                "a store required to decide this request is unavailable; retry later",
            ),
            UpstreamRejected => {
                row(400, "invalid_request_error", "upstream_rejected", "the provider rejected the request as invalid")
            }
            UpstreamRateLimited => row(
                429,
                "rate_limit_error",
                "upstream_rate_limited",
                "the provider is rate limiting this gateway; retry later",
            ),
            UpstreamError => row(502, "server_error", "upstream_error", "the provider failed to answer the request"),
            UpstreamTimeout => row(504, "server_error", "upstream_timeout", "the provider did not answer in time"),
            Internal => row(500, "server_error", "internal_error", "the gateway failed to process the request"),
        }
    }

    pub const fn status(self) -> u16 {
        self.row().status
    }

    /// The stable string used in metrics labels, logs and the audit trail.
    pub const fn as_str(self) -> &'static str {
        self.row().code
    }

    /// Whether a `Retry-After` header belongs on this refusal.
    pub const fn retries(self) -> bool {
        matches!(self, DenyCode::RateLimitExceeded | DenyCode::UpstreamRateLimited | DenyCode::Unavailable)
    }
}

/// Anything a crate returns that ends as a refusal says which one.
pub trait HasDenyCode {
    fn deny_code(&self) -> DenyCode;
}

/// A refusal ready to render. `param` is a static field name (never caller content).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Denial {
    pub code: DenyCode,
    pub param: Option<&'static str>,
    pub retry_after_secs: Option<u32>,
}

impl Denial {
    pub const fn new(code: DenyCode) -> Self {
        Self { code, param: None, retry_after_secs: None }
    }

    pub const fn with_param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    pub const fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// The wire body, as OpenAI shapes it.
    pub fn body(&self) -> ErrorBody {
        let row = self.code.row();
        ErrorBody {
            error: ErrorDetail { message: row.message, error_type: row.error_type, param: self.param, code: row.code },
        }
    }

    /// The body as bytes; a fixed shape of static strings cannot fail to serialize.
    pub fn body_bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(&self.body()).unwrap_or_default())
    }
}

impl From<DenyCode> for Denial {
    fn from(code: DenyCode) -> Self {
        Denial::new(code)
    }
}

#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize)]
pub struct ErrorDetail {
    pub message: &'static str,
    #[serde(rename = "type")]
    pub error_type: &'static str,
    pub param: Option<&'static str>,
    pub code: &'static str,
}

/// The one renderer: both planes answer every refusal through this.
impl IntoResponse for Denial {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, self.body_bytes()).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.code.retries() {
            let secs = self.retry_after_secs.unwrap_or(1).max(1);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp.extensions_mut().insert(self.code);
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_distinct_meaningful_row() {
        for code in DenyCode::ALL {
            let row = code.row();
            assert!((400..600).contains(&row.status), "{code:?}");
            assert!(!row.message.is_empty());
            // fixed messages: lowercase start, no trailing period, no placeholders
            assert!(!row.message.contains('{'), "{code:?}");
            assert!(row.message.chars().next().is_some_and(|c| c.is_lowercase()), "{code:?}");
        }
    }

    #[test]
    fn refusal_bodies_are_pinned() {
        let bodies: Vec<(String, u16, serde_json::Value)> = DenyCode::ALL
            .iter()
            .map(|c| {
                let d = Denial::new(*c);
                (format!("{c:?}"), c.status(), serde_json::to_value(d.body()).unwrap())
            })
            .collect();
        insta::assert_json_snapshot!("refusal_table", bodies);
    }

    #[test]
    fn rate_limits_carry_retry_after() {
        let resp = Denial::new(DenyCode::RateLimitExceeded).retry_after(7).into_response();
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "7");
        let resp = Denial::new(DenyCode::InvalidApiKey).into_response();
        assert!(resp.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn param_is_rendered() {
        let body = serde_json::to_value(Denial::new(DenyCode::ContentBlocked).with_param("pii").body()).unwrap();
        assert_eq!(body["error"]["param"], "pii");
    }
}
