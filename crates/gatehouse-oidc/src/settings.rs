//! What an `[[oidc]]` issuer is once the config file is validated: the settings this crate's
//! [`crate::Issuer`] runs on. The config crate reads and checks the file and builds these.

use std::collections::BTreeMap;
use std::time::Duration;

/// Signature algorithms an issuer may use. Nothing symmetric, nothing `none`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JwtAlg {
    Rs256,
    Es256,
    EdDsa,
}

impl JwtAlg {
    pub fn parse(s: &str) -> Option<JwtAlg> {
        match s {
            "RS256" => Some(JwtAlg::Rs256),
            "ES256" => Some(JwtAlg::Es256),
            "EdDSA" => Some(JwtAlg::EdDsa),
            _ => None,
        }
    }
}

/// Where the claims a principal is built from live in the token (RFC 6901 JSON pointers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimMap {
    pub subject: String,
    pub org: Option<String>,
    pub project: Option<String>,
    pub roles: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcIssuer {
    /// Our name for it (audit actor `oidc:<name>:<subject>`).
    pub name: String,
    /// Exactly the `iss` the tokens carry; discovery is `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// Skip discovery and fetch keys here.
    pub jwks_uri: Option<String>,
    pub audiences: Vec<String>,
    pub algorithms: Vec<JwtAlg>,
    pub data_plane: bool,
    pub control_plane: bool,
    pub claims: ClaimMap,
    /// Org / project names used when the token has no such claim.
    pub default_org: Option<String>,
    pub default_project: Option<String>,
    /// Data plane: role -> scopes. A role not listed here denies the token.
    pub roles: BTreeMap<String, Vec<String>>,
    /// Control plane: role -> admin role (`org_admin`, `member`, `viewer`; `platform_admin`
    /// only if written out). A role not listed here denies the token.
    pub admin_roles: BTreeMap<String, String>,
    /// Refuse tokens whose `typ` is not `at+jwt` (RFC 9068): an ID token is not an access token.
    pub require_access_token_type: bool,
    /// Console sign-in with this issuer (`planes` includes `console`).
    pub console: Option<ConsoleClient>,
    pub clock_skew: Duration,
    pub jwks_refresh: Duration,
    pub unknown_kid_cooldown: Duration,
    pub fetch_timeout: Duration,
    pub max_document_bytes: usize,
}

/// This deployment as an OpenID relying party of an issuer, for console sign-in
/// (authorization code with PKCE).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleClient {
    pub client_id: String,
    /// Where the client secret lives (`env:NAME` or `file:/path`), for a confidential client
    /// (`client_secret_basic`); none for a public one. The binary resolves it.
    pub client_secret: Option<String>,
    /// Exactly the redirect URI registered with the issuer, ending in `/sign-in/oidc/callback`.
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    /// Make the person a member of the org at sign-in (by the `email` claim), with the mapped
    /// role; otherwise the session acts without a member.
    pub jit_membership: bool,
    /// Signing out of the console also ends the session at the provider (OpenID Connect
    /// RP-Initiated Logout), when its discovery document names an `end_session_endpoint`.
    pub sign_out_at_provider: bool,
    /// Where the provider sends the browser after that (registered with it).
    pub post_logout_redirect_uri: Option<String>,
}

/// https, or http to a loopback host (tests and sidecars): keys fetched in clear text from
/// elsewhere could be swapped on the way.
pub fn trusted_url(u: &str) -> bool {
    let Ok(url) = url::Url::parse(u) else { return false };
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        },
        _ => false,
    }
}

/// How the console authenticates to a plain OAuth 2.0 provider's token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenAuth {
    /// HTTP Basic with the form-encoded id and secret (RFC 6749 2.3.1).
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form (what GitHub documents).
    ClientSecretPost,
}

/// A plain OAuth 2.0 provider for console sign-in (GitHub and its like): no ID token, so the
/// person is whoever the provider's user endpoint says the access token belongs to, and their
/// role is the one their verified email holds as a member of `org` here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthProvider {
    /// Our name for it (the button, the audit actor `oidc:<name>:<id>`); unique among
    /// `[[oidc]]` and `[[oauth]]` names.
    pub name: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    /// Who the access token belongs to: a JSON object.
    pub user_endpoint: String,
    /// The person's addresses (GitHub's `/user/emails`: `[{email, verified, primary}]`); without
    /// it, the user object's `email` counts only if its `email_verified` is `true`.
    pub emails_endpoint: Option<String>,
    /// JSON pointer to the person's stable id in the user object (GitHub: `/id`).
    pub subject: String,
    pub client_id: String,
    /// Where the client secret lives (`env:NAME` or `file:/path`); the binary resolves it.
    pub client_secret: Option<String>,
    pub token_auth: TokenAuth,
    /// Exactly the redirect URI registered with the provider, ending in `/sign-in/oauth/callback`.
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    /// The org (by name) whose members may sign in with this provider.
    pub org: String,
    pub fetch_timeout: Duration,
    pub max_document_bytes: usize,
}
