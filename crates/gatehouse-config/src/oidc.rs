//! `[[oidc]]` (trusted issuers of JWT access tokens) and `[[exchange]]` (which federated
//! workloads may swap their JWT for a capability token, and with what caveats). Static: the
//! JWKS caches live as long as the process; change them with a restart.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use gatehouse_oidc::settings::{ClaimMap, ConsoleClient, JwtAlg, OidcIssuer, trusted_url};

use crate::Issue;

/// One `[[exchange]]` rule: a federated identity of `issuer` mapped to `org` whose subject
/// matches (and whose claims equal the given values) may get a capability token with these
/// caveats, for at most `max_ttl` and never beyond the JWT's own expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeRule {
    pub issuer: String,
    pub org: String,
    pub project: String,
    /// Glob on the subject: `*` matches any run of characters.
    pub subject: String,
    /// JSON pointer -> required string value.
    pub claims: BTreeMap<String, String>,
    pub scopes: Vec<String>,
    pub models: Option<Vec<String>>,
    pub budget_usd: Option<String>,
    pub rpm: Option<u32>,
    pub max_ttl: Duration,
    /// Exchanges one subject may make per minute.
    pub per_subject_per_minute: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOidc {
    pub name: String,
    pub issuer: String,
    pub jwks_uri: Option<String>,
    pub audiences: Option<Vec<String>>,
    pub algorithms: Option<Vec<String>>,
    pub planes: Option<Vec<String>>,
    pub claims: Option<RawClaims>,
    pub default_org: Option<String>,
    pub default_project: Option<String>,
    pub roles: Option<BTreeMap<String, Vec<String>>>,
    pub admin_roles: Option<BTreeMap<String, String>>,
    pub require_access_token_type: Option<bool>,
    pub clock_skew_secs: Option<u64>,
    pub jwks_refresh_secs: Option<u64>,
    pub unknown_kid_cooldown_secs: Option<u64>,
    pub fetch_timeout_ms: Option<u64>,
    // console sign-in (`planes` includes "console")
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub redirect_uri: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub jit_membership: Option<bool>,
    pub sign_out_at_provider: Option<bool>,
    pub post_logout_redirect_uri: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClaims {
    pub subject: Option<String>,
    pub org: Option<String>,
    pub project: Option<String>,
    pub roles: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExchange {
    pub issuer: String,
    pub org: String,
    pub project: Option<String>,
    pub subject: String,
    pub claims: Option<BTreeMap<String, String>>,
    pub scopes: Vec<String>,
    pub models: Option<Vec<String>>,
    pub budget_usd: Option<String>,
    pub rpm: Option<u32>,
    pub max_ttl_secs: Option<u64>,
    pub per_subject_per_minute: Option<u32>,
}

fn issue(issues: &mut Vec<Issue>, path: String, rule: &str) {
    issues.push(Issue { path, rule: rule.to_owned() });
}

fn pointer(p: &str) -> bool {
    p.starts_with('/') && p.len() <= 256
}

fn secs(v: Option<u64>, default: u64, min: u64, max: u64, path: String, issues: &mut Vec<Issue>) -> Duration {
    let v = v.unwrap_or(default);
    if !(min..=max).contains(&v) {
        issues.push(Issue { path, rule: format!("must be between {min} and {max} seconds") });
    }
    Duration::from_secs(v.clamp(min, max))
}

const ADMIN_ROLES: [&str; 4] = ["platform_admin", "org_admin", "member", "viewer"];

pub fn issuers(raw: Vec<RawOidc>, issues: &mut Vec<Issue>) -> Vec<OidcIssuer> {
    if raw.len() > 16 {
        issue(issues, "oidc".into(), "at most 16 issuers");
    }
    let mut out: Vec<OidcIssuer> = Vec::new();
    for (i, r) in raw.into_iter().enumerate().take(16) {
        let at = |f: &str| format!("oidc[{i}].{f}");
        if r.name.is_empty() || r.name.len() > 32 || !r.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            issue(issues, at("name"), "1 to 32 letters, digits or '-'");
        }
        if out.iter().any(|o| o.name == r.name || o.issuer == r.issuer) {
            issue(issues, at("name"), "names and issuers must be unique");
        }
        if !trusted_url(&r.issuer) {
            issue(issues, at("issuer"), "must be an https URL (http only for loopback)");
        }
        if r.jwks_uri.as_deref().is_some_and(|u| !trusted_url(u)) {
            issue(issues, at("jwks_uri"), "must be an https URL (http only for loopback)");
        }
        let algorithms = match r.algorithms {
            None => vec![JwtAlg::Rs256, JwtAlg::Es256, JwtAlg::EdDsa],
            Some(list) => list
                .iter()
                .filter_map(|a| {
                    let p = JwtAlg::parse(a);
                    if p.is_none() {
                        issue(issues, at("algorithms"), "only RS256, ES256 and EdDSA are accepted");
                    }
                    p
                })
                .collect(),
        };
        if algorithms.is_empty() {
            issue(issues, at("algorithms"), "at least one algorithm");
        }
        let planes = r.planes.unwrap_or_else(|| vec!["data".into()]);
        if planes.is_empty() || planes.iter().any(|p| !["data", "control", "console"].contains(&p.as_str())) {
            issue(issues, at("planes"), "a list of \"data\", \"control\" and/or \"console\"");
        }
        // access tokens name us as their audience; console sign-in reads ID tokens, whose
        // audience is the client id
        let audiences = r.audiences.unwrap_or_default();
        let needs_audience = planes.iter().any(|p| p == "data" || p == "control");
        if (needs_audience && audiences.is_empty())
            || audiences.len() > 16
            || audiences.iter().any(|a| a.is_empty() || a.len() > 512)
        {
            issue(issues, at("audiences"), "1 to 16 non-empty audiences (for the data and control planes)");
        }
        let c = r.claims.unwrap_or_default();
        let claims = ClaimMap {
            subject: c.subject.unwrap_or_else(|| "/sub".into()),
            org: c.org,
            project: c.project,
            roles: c.roles,
        };
        for p in [Some(&claims.subject), claims.org.as_ref(), claims.project.as_ref(), claims.roles.as_ref()]
            .into_iter()
            .flatten()
        {
            if !pointer(p) {
                issue(issues, at("claims"), "claims are JSON pointers such as \"/sub\" or \"/realm_access/roles\"");
            }
        }
        if claims.org.is_none() && r.default_org.is_none() {
            issue(issues, at("default_org"), "set claims.org or default_org: every identity needs an org");
        }
        let roles = r.roles.unwrap_or_default();
        let admin_roles = r.admin_roles.unwrap_or_default();
        if roles.len() > 256 || admin_roles.len() > 256 {
            issue(issues, at("roles"), "at most 256 roles");
        }
        if admin_roles.values().any(|v| !ADMIN_ROLES.contains(&v.as_str())) {
            issue(issues, at("admin_roles"), "values are platform_admin, org_admin, member or viewer");
        }
        if planes.iter().any(|p| p == "control" || p == "console") && claims.roles.is_none() {
            issue(issues, at("claims.roles"), "the control plane and the console need a roles claim");
        }
        let console = console_client(
            planes.iter().any(|p| p == "console"),
            ConsoleFields {
                client_id: r.client_id,
                client_secret: r.client_secret,
                redirect_uri: r.redirect_uri,
                scopes: r.scopes,
                jit_membership: r.jit_membership,
                sign_out_at_provider: r.sign_out_at_provider,
                post_logout_redirect_uri: r.post_logout_redirect_uri,
            },
            &at,
            issues,
        );
        if console.is_some() && admin_roles.is_empty() {
            issue(issues, at("admin_roles"), "console sign-in needs admin_roles: which roles may sign in, as what");
        }
        out.push(OidcIssuer {
            name: r.name,
            issuer: r.issuer,
            jwks_uri: r.jwks_uri,
            audiences,
            algorithms,
            data_plane: planes.iter().any(|p| p == "data"),
            control_plane: planes.iter().any(|p| p == "control"),
            claims,
            default_org: r.default_org,
            default_project: r.default_project,
            roles,
            admin_roles,
            require_access_token_type: r.require_access_token_type.unwrap_or(true),
            console,
            clock_skew: secs(r.clock_skew_secs, 60, 0, 300, at("clock_skew_secs"), issues),
            jwks_refresh: secs(r.jwks_refresh_secs, 300, 10, 86_400, at("jwks_refresh_secs"), issues),
            unknown_kid_cooldown: secs(
                r.unknown_kid_cooldown_secs,
                30,
                1,
                3_600,
                at("unknown_kid_cooldown_secs"),
                issues,
            ),
            fetch_timeout: Duration::from_millis({
                let v = r.fetch_timeout_ms.unwrap_or(3_000);
                if !(100..=30_000).contains(&v) {
                    issue(issues, at("fetch_timeout_ms"), "must be between 100 and 30000 milliseconds");
                }
                v.clamp(100, 30_000)
            }),
            max_document_bytes: 64 * 1024,
        });
    }
    out
}

struct ConsoleFields {
    client_id: Option<String>,
    client_secret: Option<String>,
    redirect_uri: Option<String>,
    scopes: Option<Vec<String>>,
    jit_membership: Option<bool>,
    sign_out_at_provider: Option<bool>,
    post_logout_redirect_uri: Option<String>,
}

/// The path every console redirect URI ends in (the console's callback route).
pub const CONSOLE_CALLBACK: &str = "/sign-in/oidc/callback";

/// The console client of an issuer whose planes include `console`; its fields anywhere else
/// are a mistake.
fn console_client(
    on: bool,
    f: ConsoleFields,
    at: &dyn Fn(&str) -> String,
    issues: &mut Vec<Issue>,
) -> Option<ConsoleClient> {
    if !on {
        let stray = f.client_id.is_some()
            || f.client_secret.is_some()
            || f.redirect_uri.is_some()
            || f.scopes.is_some()
            || f.jit_membership.is_some()
            || f.sign_out_at_provider.is_some()
            || f.post_logout_redirect_uri.is_some();
        if stray {
            issue(
                issues,
                at("planes"),
                "client_id, client_secret, redirect_uri, scopes, jit_membership, sign_out_at_provider and \
                 post_logout_redirect_uri need \"console\" in planes",
            );
        }
        return None;
    }
    let client_id = f.client_id.unwrap_or_default();
    if client_id.is_empty() || client_id.len() > 256 {
        issue(
            issues,
            at("client_id"),
            "the console needs the client id registered with the issuer (1 to 256 characters)",
        );
    }
    if let Some(secret) = &f.client_secret
        && let Err(rule) = crate::SecretRef::parse(secret)
    {
        issue(issues, at("client_secret"), rule);
    }
    let redirect_uri = f.redirect_uri.unwrap_or_default();
    let path_ok = url::Url::parse(&redirect_uri).is_ok_and(|u| u.path() == CONSOLE_CALLBACK && u.query().is_none());
    if !trusted_url(&redirect_uri) || !path_ok {
        issue(
            issues,
            at("redirect_uri"),
            "the console's callback as registered with the issuer: https (http only on loopback), path /sign-in/oidc/callback",
        );
    }
    let scopes = f.scopes.unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()]);
    if !scopes.iter().any(|s| s == "openid")
        || scopes.len() > 32
        || scopes.iter().any(|s| s.is_empty() || s.len() > 128 || s.contains(' '))
    {
        issue(issues, at("scopes"), "up to 32 scopes, \"openid\" among them");
    }
    if let Some(u) = &f.post_logout_redirect_uri {
        let path_ok = url::Url::parse(u).is_ok_and(|u| u.path() == "/sign-in" && u.query().is_none());
        if !trusted_url(u) || !path_ok {
            issue(
                issues,
                at("post_logout_redirect_uri"),
                "the console's sign-in page as registered with the issuer: https (http only on loopback), path /sign-in",
            );
        }
        if f.sign_out_at_provider != Some(true) {
            issue(issues, at("post_logout_redirect_uri"), "needs sign_out_at_provider = true");
        }
    }
    Some(ConsoleClient {
        client_id,
        client_secret: f.client_secret,
        redirect_uri,
        scopes,
        jit_membership: f.jit_membership.unwrap_or(false),
        sign_out_at_provider: f.sign_out_at_provider.unwrap_or(false),
        post_logout_redirect_uri: f.post_logout_redirect_uri,
    })
}

pub fn exchange_rules(raw: Vec<RawExchange>, issuers: &[OidcIssuer], issues: &mut Vec<Issue>) -> Vec<ExchangeRule> {
    if raw.len() > 256 {
        issue(issues, "exchange".into(), "at most 256 rules");
    }
    raw.into_iter()
        .take(256)
        .enumerate()
        .map(|(i, r)| {
            let at = |f: &str| format!("exchange[{i}].{f}");
            if !issuers.iter().any(|o| o.name == r.issuer && o.data_plane) {
                issue(issues, at("issuer"), "must name an [[oidc]] issuer with the data plane");
            }
            if r.subject.is_empty() || r.subject.len() > 256 {
                issue(issues, at("subject"), "a subject or glob, 1 to 256 characters");
            }
            if r.scopes.is_empty() || r.scopes.len() > 64 {
                issue(issues, at("scopes"), "1 to 64 scopes");
            }
            let claims = r.claims.unwrap_or_default();
            if claims.keys().any(|k| !pointer(k)) {
                issue(issues, at("claims"), "keys are JSON pointers");
            }
            ExchangeRule {
                issuer: r.issuer,
                org: r.org,
                project: r.project.unwrap_or_else(|| "default".into()),
                subject: r.subject,
                claims,
                scopes: r.scopes,
                models: r.models,
                budget_usd: r.budget_usd,
                rpm: r.rpm,
                max_ttl: secs(r.max_ttl_secs, 3_600, 60, 7 * 86_400, at("max_ttl_secs"), issues),
                per_subject_per_minute: match r.per_subject_per_minute.unwrap_or(60) {
                    n @ 1..=100_000 => n,
                    _ => {
                        issue(issues, at("per_subject_per_minute"), "must be between 1 and 100000");
                        60
                    }
                },
            }
        })
        .collect()
}
