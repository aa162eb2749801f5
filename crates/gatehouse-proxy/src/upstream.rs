//! One configured provider: its HTTP client and the bounds on every call to it.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_config::{EnvLookup, ProviderConfig, ProviderKind};
use gatehouse_core::{DenyCode, Principal};
use gatehouse_providers::Endpoint;
use gatehouse_providers::chat::Family;
use http::{HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

pub struct Upstream {
    pub name: Arc<str>,
    /// The API the provider speaks: requests and answers are translated when it is not the
    /// one the chain checks (OpenAI's).
    pub family: Family,
    urls: Urls,
    /// `Authorization: Bearer <provider key>` (Anthropic: `x-api-key`, Azure: `api-key`,
    /// Gemini: `x-goog-api-key`), marked sensitive so it never prints.
    auth: Option<(HeaderName, HeaderValue)>,
    /// The header a key goes in, and whether as `Bearer <key>`: for stored credentials.
    scheme: (HeaderName, bool),
    /// Signs `x-gatehouse-*` identity headers when configured: key id and secret.
    identity: Option<(String, SecretString)>,
    /// Bedrock: signs every request with AWS SigV4.
    sigv4: Option<SigV4>,
    pub client: reqwest::Client,
    /// The pools of deployments with a connect timeout of their own, by that timeout.
    other_clients: Vec<(Duration, reqwest::Client)>,
    pub first_byte_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_stream_duration: Duration,
    pub max_response_bytes: u64,
    /// Active health checks: where, and how often.
    pub health: Option<(reqwest::Url, Duration)>,
}

/// Where requests go. Parsed once where the URL does not depend on the model: handing reqwest
/// a string would parse it again on every request.
enum Urls {
    Fixed {
        chat: reqwest::Url,
        embeddings: reqwest::Url,
    },
    /// Azure OpenAI: `{base}/openai/deployments/{model}/{endpoint}?api-version=...`.
    Azure {
        base: reqwest::Url,
        api_version: String,
    },
    /// Gemini: `{base}/models/{model}:generateContent` (`:streamGenerateContent?alt=sse`).
    Gemini {
        base: reqwest::Url,
    },
    /// Bedrock: `{base}/model/{model}/converse` (`/converse-stream`).
    Bedrock {
        base: reqwest::Url,
    },
}

/// What stays unencoded in a Bedrock model id: AWS signs the path percent-encoded once more,
/// so the id (`...-v1:0`, ARNs with `/`) must be encoded exactly as AWS's own clients do.
const MODEL_ID: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

impl Urls {
    /// The URL of one call. The model is one path segment, percent-encoded: a model name
    /// cannot reach another path.
    fn of(&self, endpoint: Endpoint, model: &str, stream: bool) -> reqwest::Url {
        match self {
            Urls::Fixed { chat, embeddings } => match endpoint {
                Endpoint::ChatCompletions => chat.clone(),
                Endpoint::Embeddings => embeddings.clone(),
            },
            Urls::Azure { base, api_version } => {
                let mut url = base.clone();
                let last = endpoint.upstream_path().trim_start_matches('/');
                if let Ok(mut segments) = url.path_segments_mut() {
                    segments.pop_if_empty().extend(["openai", "deployments", model]).extend(last.split('/'));
                }
                url.query_pairs_mut().append_pair("api-version", api_version);
                url
            }
            Urls::Gemini { base } => {
                let mut url = base.clone();
                let action = if stream { "streamGenerateContent" } else { "generateContent" };
                if let Ok(mut segments) = url.path_segments_mut() {
                    segments.pop_if_empty().push("models").push(&format!("{model}:{action}"));
                }
                if stream {
                    url.query_pairs_mut().append_pair("alt", "sse");
                }
                url
            }
            Urls::Bedrock { base } => {
                let mut url = base.clone();
                let action = if stream { "converse-stream" } else { "converse" };
                let id = percent_encoding::utf8_percent_encode(model, MODEL_ID);
                url.set_path(&format!("{}/model/{id}/{action}", base.path().trim_end_matches('/')));
                url
            }
        }
    }
}

/// AWS credentials and the region a Bedrock provider's requests are signed for.
struct SigV4 {
    credentials: aws_credential_types::Credentials,
    region: String,
}

impl SigV4 {
    /// The headers that sign this request (`authorization`, `x-amz-date`, and the session
    /// token when there is one). `None` only if signing itself failed.
    fn sign(&self, url: &reqwest::Url, body: &[u8]) -> Option<Vec<(&'static str, HeaderValue)>> {
        use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
        let identity = self.credentials.clone().into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("bedrock")
            .time(std::time::SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .ok()?
            .into();
        let headers = [("content-type", "application/json")];
        let request =
            SignableRequest::new("POST", url.as_str(), headers.into_iter(), SignableBody::Bytes(body)).ok()?;
        let (instructions, _) = sign(request, &params).ok()?.into_parts();
        let (headers, _) = instructions.into_parts();
        headers
            .into_iter()
            .map(|h| {
                let mut v = HeaderValue::from_str(h.value()).ok()?;
                v.set_sensitive(h.sensitive());
                Some((h.name(), v))
            })
            .collect()
    }
}

/// The Messages API version every request to an `anthropic` provider names.
const ANTHROPIC_VERSION: &str = "2023-06-01";

/// A CA bundle is a few certificates; anything larger is not one.
const MAX_CA_FILE: u64 = 1024 * 1024;

/// The certificates of a provider's `ca_file` (at most 1 MiB, at least one certificate).
fn ca_bundle(provider: &str, path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, crate::Error> {
    let bad = || crate::Error::CaFile(provider.to_owned(), path.display().to_string());
    let mut pem = Vec::new();
    let file = std::fs::File::open(path).map_err(|_| bad())?;
    std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_CA_FILE + 1), &mut pem).map_err(|_| bad())?;
    if pem.len() as u64 > MAX_CA_FILE {
        return Err(bad());
    }
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|_| bad())?;
    if certs.is_empty() {
        return Err(bad());
    }
    Ok(certs)
}

impl Upstream {
    /// Builds the client and resolves the provider's secret reference. Errors name the
    /// provider and the reference, never the secret.
    /// `connect_timeouts`: those of the provider's deployments that set their own.
    pub fn build(
        cfg: &ProviderConfig,
        env: EnvLookup<'_>,
        connect_timeouts: &[Duration],
    ) -> Result<Upstream, crate::Error> {
        let family = gatehouse_gates::route::family(cfg.kind);
        let scheme = match cfg.kind {
            ProviderKind::Anthropic => (HeaderName::from_static("x-api-key"), false),
            ProviderKind::Gemini => (HeaderName::from_static("x-goog-api-key"), false),
            ProviderKind::AzureOpenAi if !cfg.bearer => (HeaderName::from_static("api-key"), false),
            _ => (http::header::AUTHORIZATION, true),
        };
        let auth = match cfg.resolve_api_key(env)? {
            None => None,
            Some(key) => {
                let key = key.expose_secret();
                let (name, text) = if scheme.1 {
                    (scheme.0.clone(), format!("Bearer {key}"))
                } else {
                    (scheme.0.clone(), key.to_owned())
                };
                let mut v = HeaderValue::from_str(&text)
                    .map_err(|_| gatehouse_config::SecretError::NotAHeaderValue(cfg.name.clone()))?;
                v.set_sensitive(true);
                Some((name, v))
            }
        };
        let ca = match &cfg.ca_file {
            Some(path) => Some(ca_bundle(&cfg.name, path)?),
            None => None,
        };
        let client_with = |connect: Duration| {
            let mut builder = reqwest::Client::builder();
            if let Some(certs) = &ca {
                builder = builder.tls_certs_merge(certs.clone());
            }
            builder
                .connect_timeout(connect)
                // no read timeout here: it would also bound the wait for the response headers
                // (the first-byte timeout); the callers bound the first byte, each idle gap and
                // the total
                // a provider that redirects is misconfigured or hostile: never follow
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(cfg.max_idle_connections)
                .pool_idle_timeout(Duration::from_secs(90))
                .tcp_nodelay(true)
                .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|_| crate::Error::Client(cfg.name.clone()))
        };
        let client = client_with(cfg.connect_timeout)?;
        // deployments with a connect timeout of their own get a pool of their own (the connect
        // timeout is a pool's setting)
        let mut other_clients = Vec::new();
        for t in connect_timeouts {
            if *t != cfg.connect_timeout && !other_clients.iter().any(|(d, _)| d == t) {
                other_clients.push((*t, client_with(*t)?));
            }
        }
        let identity = cfg.resolve_identity_key(env)?;
        let sigv4 = cfg.resolve_aws_keys(env)?.map(|k| SigV4 {
            credentials: aws_credential_types::Credentials::new(
                k.access_key_id.expose_secret(),
                k.secret_access_key.expose_secret(),
                k.session_token.map(|t| t.expose_secret().to_owned()),
                None,
                "gatehouse-config",
            ),
            region: cfg.region.clone().unwrap_or_default(),
        });
        let bad_url = || crate::Error::Client(cfg.name.clone());
        let base = reqwest::Url::parse(&cfg.base_url).map_err(|_| bad_url())?;
        let health = match &cfg.health_check {
            Some((path, every)) => {
                Some((reqwest::Url::parse(&format!("{}{path}", cfg.base_url)).map_err(|_| bad_url())?, *every))
            }
            None => None,
        };
        let urls = match cfg.kind {
            ProviderKind::AzureOpenAi => Urls::Azure { base, api_version: cfg.api_version.clone().unwrap_or_default() },
            ProviderKind::Gemini => Urls::Gemini { base },
            ProviderKind::Bedrock => Urls::Bedrock { base },
            _ => {
                let url_of = |e: Endpoint| {
                    let path = match (family, e) {
                        (Family::Anthropic, Endpoint::ChatCompletions) => "/messages",
                        _ => e.upstream_path(),
                    };
                    reqwest::Url::parse(&format!("{}{path}", cfg.base_url)).map_err(|_| bad_url())
                };
                Urls::Fixed { chat: url_of(Endpoint::ChatCompletions)?, embeddings: url_of(Endpoint::Embeddings)? }
            }
        };
        Ok(Upstream {
            identity,
            sigv4,
            name: cfg.name.as_str().into(),
            family,
            urls,
            auth,
            scheme,
            client,
            other_clients,
            first_byte_timeout: cfg.first_byte_timeout,
            idle_timeout: cfg.idle_timeout,
            max_stream_duration: cfg.max_stream_duration,
            max_response_bytes: cfg.max_response_bytes.get(),
            health,
        })
    }

    /// The header carrying `key` the way this provider takes keys, marked sensitive.
    fn auth_for(&self, key: &SecretString) -> Option<(HeaderName, HeaderValue)> {
        let (name, bearer) = &self.scheme;
        let text = if *bearer { format!("Bearer {}", key.expose_secret()) } else { key.expose_secret().to_owned() };
        let mut v = HeaderValue::from_str(&text).ok()?;
        v.set_sensitive(true);
        Some((name.clone(), v))
    }

    /// One active health check: `GET` the configured path with the provider's credential;
    /// healthy when it answers a success status within the first-byte timeout. `None` when the
    /// provider has no health check.
    pub async fn check_health(&self) -> Option<bool> {
        let (url, _) = self.health.as_ref()?;
        let mut rb = self.client.get(url.clone());
        if let Some((name, value)) = &self.auth {
            rb = rb.header(name, value.clone());
        }
        if self.family == Family::Anthropic {
            rb = rb.header("anthropic-version", ANTHROPIC_VERSION);
        }
        let answer = tokio::time::timeout(self.first_byte_timeout, rb.send()).await;
        Some(matches!(answer, Ok(Ok(r)) if r.status().is_success()))
    }

    /// A request carrying only what we choose: our body, our provider credential, the
    /// request id for correlation, and (when configured) our trace context and signed identity headers. No client
    /// header is copied, so a client's own `x-gatehouse-*` headers never arrive.
    /// `stored`: the tenant's own stored credential for this provider, which replaces the
    /// configured one (for a SigV4-signed provider, an AWS key pair that signs instead).
    pub fn request(
        &self,
        call: Call<'_>,
        body: bytes::Bytes,
        who: Option<&Principal>,
        stored: Option<&SecretString>,
    ) -> reqwest::RequestBuilder {
        let url = self.urls.of(call.endpoint, call.model, call.stream);
        let signed = match (&self.identity, who) {
            (Some((key_id, key)), Some(p)) => {
                let id = gatehouse_gates::identity_of(p, call.request_id);
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                gatehouse_identity::sign(key_id, key.expose_secret().as_bytes(), "POST", url.path(), &body, &id, now)
            }
            _ => None,
        };
        // an unsigned request would only be refused: one that failed to sign goes as it is; a
        // tenant's stored AWS key pair signs instead of the configured one
        let aws = match (self.sigv4.as_ref(), stored) {
            (Some(s), Some(k)) => {
                gatehouse_providers::aws_credential(k.expose_secret()).and_then(|(id, secret, token)| {
                    let own = aws_credential_types::Credentials::new(
                        id,
                        secret,
                        token.map(str::to_owned),
                        None,
                        "gatehouse-stored",
                    );
                    SigV4 { credentials: own, region: s.region.clone() }.sign(&url, &body)
                })
            }
            (Some(s), None) => s.sign(&url, &body),
            (None, _) => None,
        };
        let client = match call.connect_timeout {
            Some(t) => self.other_clients.iter().find(|(d, _)| *d == t).map_or(&self.client, |(_, c)| c),
            None => &self.client,
        };
        let mut rb = client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("x-request-id", call.request_id)
            .body(body);
        match stored.filter(|_| self.sigv4.is_none()).and_then(|k| self.auth_for(k)) {
            Some((name, value)) => rb = rb.header(name, value),
            None => {
                if let Some((name, value)) = &self.auth {
                    rb = rb.header(name, value.clone());
                }
            }
        }
        if self.family == Family::Anthropic {
            rb = rb.header("anthropic-version", ANTHROPIC_VERSION);
        }
        if let Some(t) = call.traceparent {
            rb = rb.header("traceparent", t);
        }
        for (name, value) in aws.into_iter().flatten() {
            rb = rb.header(name, value);
        }
        for (name, value) in signed.into_iter().flatten() {
            rb = rb.header(name, value);
        }
        rb
    }
}

/// What one call to a provider is: which endpoint, for which of its models, streamed or not.
pub struct Call<'a> {
    pub endpoint: Endpoint,
    pub model: &'a str,
    pub stream: bool,
    pub request_id: &'a str,
    /// W3C `traceparent`, when propagation is on (the gateway's own, never the caller's).
    pub traceparent: Option<&'a str>,
    /// The deployment's own connect timeout, if it sets one.
    pub connect_timeout: Option<Duration>,
}

/// The identity an upstream is told about: tenant ids, the credential by public id, roles.
/// What a provider's non-success status means for our caller. The provider's body is never
/// copied: it may echo key fragments or internal details.
pub fn refusal_for_status(status: u16) -> DenyCode {
    match status {
        400 | 404 | 409 | 413 | 422 => DenyCode::UpstreamRejected,
        429 => DenyCode::UpstreamRateLimited,
        408 | 504 => DenyCode::UpstreamTimeout,
        // 401/403: our provider credential is wrong, not the caller's; 5xx: provider failed
        _ => DenyCode::UpstreamError,
    }
}

/// A provider's Retry-After in whole seconds, bounded to something sane.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<u32> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u32>().ok())
        .map(|s| s.clamp(1, 3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_without_leaking() {
        assert_eq!(refusal_for_status(400), DenyCode::UpstreamRejected);
        assert_eq!(refusal_for_status(401), DenyCode::UpstreamError);
        assert_eq!(refusal_for_status(429), DenyCode::UpstreamRateLimited);
        assert_eq!(refusal_for_status(503), DenyCode::UpstreamError);
        assert_eq!(refusal_for_status(504), DenyCode::UpstreamTimeout);
    }
}
