//! `[[oauth]]`: plain OAuth 2.0 providers for console sign-in (GitHub and its like). Static,
//! like `[[oidc]]`: change them with a restart.

use std::time::Duration;

use serde::Deserialize;

use gatehouse_oidc::settings::{OAuthProvider, OidcIssuer, TokenAuth, trusted_url};

use crate::Issue;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth {
    pub name: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub user_endpoint: String,
    pub emails_endpoint: Option<String>,
    pub subject: Option<String>,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub token_auth: Option<String>,
    pub redirect_uri: String,
    pub scopes: Option<Vec<String>>,
    pub org: String,
    pub fetch_timeout_ms: Option<u64>,
}

/// The path every OAuth redirect URI ends in (the console's callback route).
pub const OAUTH_CALLBACK: &str = "/sign-in/oauth/callback";

fn issue(issues: &mut Vec<Issue>, path: String, rule: &str) {
    issues.push(Issue { path, rule: rule.to_owned() });
}

pub fn providers(raw: Vec<RawOAuth>, oidc: &[OidcIssuer], issues: &mut Vec<Issue>) -> Vec<OAuthProvider> {
    if raw.len() > 16 {
        issue(issues, "oauth".into(), "at most 16 providers");
    }
    let mut out: Vec<OAuthProvider> = Vec::new();
    for (i, r) in raw.into_iter().enumerate().take(16) {
        let at = |f: &str| format!("oauth[{i}].{f}");
        if r.name.is_empty() || r.name.len() > 32 || !r.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            issue(issues, at("name"), "1 to 32 letters, digits or '-'");
        }
        // one namespace: the audit actor `oidc:<name>:<id>` must say which provider vouched
        if out.iter().any(|o| o.name == r.name) || oidc.iter().any(|o| o.name == r.name) {
            issue(issues, at("name"), "must be unique among [[oidc]] and [[oauth]] names");
        }
        for (field, url) in [
            ("authorization_endpoint", Some(&r.authorization_endpoint)),
            ("token_endpoint", Some(&r.token_endpoint)),
            ("user_endpoint", Some(&r.user_endpoint)),
            ("emails_endpoint", r.emails_endpoint.as_ref()),
        ] {
            if url.is_some_and(|u| !trusted_url(u)) {
                issue(issues, at(field), "must be an https URL (http only for loopback)");
            }
        }
        let subject = r.subject.unwrap_or_else(|| "/id".into());
        if !subject.starts_with('/') || subject.len() > 256 {
            issue(issues, at("subject"), "a JSON pointer into the user object, such as \"/id\"");
        }
        if r.client_id.is_empty() || r.client_id.len() > 256 {
            issue(issues, at("client_id"), "the client id registered with the provider (1 to 256 characters)");
        }
        if let Some(secret) = &r.client_secret
            && let Err(rule) = crate::SecretRef::parse(secret)
        {
            issue(issues, at("client_secret"), rule);
        }
        let token_auth = match r.token_auth.as_deref() {
            None | Some("client_secret_basic") => TokenAuth::ClientSecretBasic,
            Some("client_secret_post") => TokenAuth::ClientSecretPost,
            Some(_) => {
                issue(issues, at("token_auth"), "client_secret_basic or client_secret_post");
                TokenAuth::ClientSecretBasic
            }
        };
        let path_ok = url::Url::parse(&r.redirect_uri).is_ok_and(|u| u.path() == OAUTH_CALLBACK && u.query().is_none());
        if !trusted_url(&r.redirect_uri) || !path_ok {
            issue(
                issues,
                at("redirect_uri"),
                "the console's callback as registered with the provider: https (http only on loopback), path /sign-in/oauth/callback",
            );
        }
        let scopes = r.scopes.unwrap_or_default();
        if scopes.len() > 32 || scopes.iter().any(|s| s.is_empty() || s.len() > 128 || s.contains(' ')) {
            issue(issues, at("scopes"), "up to 32 scopes without spaces");
        }
        if r.org.is_empty()
            || r.org.len() > 64
            || !r.org.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            issue(issues, at("org"), "the name of the org whose members sign in with this provider");
        }
        let fetch_timeout = r.fetch_timeout_ms.unwrap_or(5_000);
        if !(100..=30_000).contains(&fetch_timeout) {
            issue(issues, at("fetch_timeout_ms"), "must be between 100 and 30000 milliseconds");
        }
        out.push(OAuthProvider {
            name: r.name,
            authorization_endpoint: r.authorization_endpoint,
            token_endpoint: r.token_endpoint,
            user_endpoint: r.user_endpoint,
            emails_endpoint: r.emails_endpoint,
            subject,
            client_id: r.client_id,
            client_secret: r.client_secret,
            token_auth,
            redirect_uri: r.redirect_uri,
            scopes,
            org: r.org,
            fetch_timeout: Duration::from_millis(fetch_timeout.clamp(100, 30_000)),
            max_document_bytes: 64 * 1024,
        });
    }
    out
}
