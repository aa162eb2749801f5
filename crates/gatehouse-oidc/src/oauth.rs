//! Console sign-in with a plain OAuth 2.0 provider (GitHub and its like): the authorization
//! code flow with PKCE (RFC 6749, RFC 7636), without OpenID Connect. There is no ID token to
//! verify, so who the person is comes from the provider's own API, asked with the access token
//! the code was exchanged for: a stable id from the user endpoint and an email address the
//! provider says is verified. What they may do here is not the provider's to say: the caller
//! (the console) looks their verified email up among the members of the provider's org.
//!
//! Every answer is bounded (size, time), no redirect is followed, and a token endpoint that
//! answers 200 with an `error` (as GitHub does) is a refusal.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::Error;
use crate::jwks::read_json;
use crate::login::{challenge, random};
use crate::settings::{OAuthProvider, TokenAuth};

/// One provider with its HTTP client and resolved client secret.
pub struct OAuthClient {
    cfg: OAuthProvider,
    secret: Option<SecretString>,
    http: reqwest::Client,
}

/// Who a provider says signed in.
#[derive(Clone, Debug)]
pub struct OAuthSignIn {
    /// The provider's stable id for the person (the user object at the configured pointer).
    pub subject: String,
    /// The address the provider says the person has verified (the primary one, when it says
    /// which); `None` if it vouches for none.
    pub email: Option<String>,
    pub name: Option<String>,
}

/// An authorization request to remember until its callback (no nonce: there is no ID token).
#[derive(Debug)]
pub struct OAuthRequest {
    pub url: String,
    pub state: String,
    pub verifier: String,
}

/// Longest subject, email or name taken from a provider.
const MAX_FIELD: usize = 256;

fn field(v: Option<&Value>) -> Option<String> {
    let s = match v? {
        Value::String(s) => s.clone(),
        // GitHub's ids are numbers
        Value::Number(n) if n.is_u64() || n.is_i64() => n.to_string(),
        _ => return None,
    };
    (!s.is_empty() && s.len() <= MAX_FIELD && !s.chars().any(char::is_control)).then_some(s)
}

/// The verified address to use: the primary one if the provider marks one, else the only
/// verified one; several verified and none primary is ambiguous, so none.
fn verified_email(list: &Value) -> Option<String> {
    let entries = list.as_array()?;
    let verified: Vec<&Value> =
        entries.iter().filter(|e| e.get("verified").and_then(Value::as_bool) == Some(true)).collect();
    let pick = verified
        .iter()
        .find(|e| e.get("primary").and_then(Value::as_bool) == Some(true))
        .or(if verified.len() == 1 { verified.first() } else { None })?;
    field(pick.get("email")).filter(|e| e.contains('@'))
}

impl OAuthClient {
    pub fn new(cfg: OAuthProvider, secret: Option<SecretString>) -> Result<OAuthClient, Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.fetch_timeout)
            .timeout(cfg.fetch_timeout)
            .redirect(reqwest::redirect::Policy::none())
            // GitHub's API refuses requests without one
            .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| Error::Unavailable)?;
        Ok(OAuthClient { cfg, secret, http })
    }

    pub fn config(&self) -> &OAuthProvider {
        &self.cfg
    }

    /// A fresh authorization request: state and PKCE verifier, 256 random bits each.
    pub fn authorization_request(&self) -> Result<OAuthRequest, Error> {
        let (state, verifier) = (random()?, random()?);
        let mut url = url::Url::parse(&self.cfg.authorization_endpoint).map_err(|_| Error::Unavailable)?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.cfg.client_id)
            .append_pair("redirect_uri", &self.cfg.redirect_uri)
            .append_pair("scope", &self.cfg.scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("code_challenge", &challenge(&verifier))
            .append_pair("code_challenge_method", "S256");
        Ok(OAuthRequest { url: url.into(), state, verifier })
    }

    /// Exchanges the code (with the verifier) and asks the provider who the token belongs to.
    pub async fn complete(&self, code: &str, verifier: &str) -> Result<OAuthSignIn, Error> {
        if code.is_empty() || code.len() > 2048 {
            return Err(Error::Invalid("code"));
        }
        let token = self.exchange(code, verifier).await?;
        let user = self.get(&self.cfg.user_endpoint, &token).await?;
        if !user.is_object() {
            return Err(Error::Invalid("user endpoint answered no object"));
        }
        let subject = field(user.pointer(&self.cfg.subject)).ok_or(Error::Invalid("no subject"))?;
        let email = match &self.cfg.emails_endpoint {
            Some(url) => verified_email(&self.get(url, &token).await?),
            None => field(user.get("email"))
                .filter(|e| e.contains('@') && user.get("email_verified").and_then(Value::as_bool) == Some(true)),
        };
        let name = field(user.get("name")).or_else(|| field(user.get("login")));
        Ok(OAuthSignIn { subject, email, name })
    }

    async fn exchange(&self, code: &str, verifier: &str) -> Result<SecretString, Error> {
        let post = self.cfg.token_auth == TokenAuth::ClientSecretPost || self.secret.is_none();
        // built whole before any await: the serializer is not Send
        let form = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "authorization_code")
                .append_pair("code", code)
                .append_pair("redirect_uri", &self.cfg.redirect_uri)
                .append_pair("code_verifier", verifier);
            if post {
                form.append_pair("client_id", &self.cfg.client_id);
                if let Some(s) = &self.secret {
                    form.append_pair("client_secret", s.expose_secret());
                }
            }
            form.finish()
        };
        let mut req = self
            .http
            .post(&self.cfg.token_endpoint)
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(http::header::ACCEPT, "application/json")
            .body(form);
        if let (false, Some(secret)) = (post, &self.secret) {
            // RFC 6749 2.3.1: both parts form-encoded before they are joined
            let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", enc(&self.cfg.client_id), enc(secret.expose_secret()));
            req = req.header(http::header::AUTHORIZATION, format!("Basic {}", STANDARD.encode(pair)));
        }
        let resp = req.send().await.map_err(|_| Error::Unavailable)?;
        let answer = read_json(resp, self.cfg.max_document_bytes, true).await?;
        if answer.get("error").is_some() {
            return Err(Error::Invalid("refused by the provider"));
        }
        let bearer = answer.get("token_type").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case("bearer"));
        let token = answer.get("access_token").and_then(Value::as_str).filter(|t| !t.is_empty() && t.len() <= 4096);
        match (bearer, token) {
            (true, Some(t)) => Ok(SecretString::from(t.to_owned())),
            _ => Err(Error::Invalid("no bearer access token")),
        }
    }

    async fn get(&self, url: &str, token: &SecretString) -> Result<Value, Error> {
        let resp = self
            .http
            .get(url)
            .bearer_auth(token.expose_secret())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|_| Error::Unavailable)?;
        // a token the provider just issued and now refuses: not the person's fault, not ours
        read_json(resp, self.cfg.max_document_bytes, false).await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{field, verified_email};

    #[test]
    fn only_an_address_the_provider_verified_is_used() {
        let primary = json!([{"email": "old@example.com", "verified": true, "primary": false},
                             {"email": "ann@example.com", "verified": true, "primary": true}]);
        assert_eq!(verified_email(&primary).as_deref(), Some("ann@example.com"));
        let unverified_primary = json!([{"email": "ann@example.com", "verified": false, "primary": true},
                                        {"email": "alt@example.com", "verified": true, "primary": false}]);
        assert_eq!(verified_email(&unverified_primary).as_deref(), Some("alt@example.com"));
        let ambiguous =
            json!([{"email": "a@example.com", "verified": true}, {"email": "b@example.com", "verified": true}]);
        assert_eq!(verified_email(&ambiguous), None, "two verified and no primary: neither");
        assert_eq!(verified_email(&json!([{"email": "a@example.com", "verified": "true"}])), None);
        assert_eq!(verified_email(&json!({"email": "a@example.com"})), None);
        assert_eq!(verified_email(&json!([{"email": "not-an-address", "verified": true}])), None);
    }

    #[test]
    fn fields_are_bounded_strings_or_integer_ids() {
        assert_eq!(field(Some(&json!(583231))).as_deref(), Some("583231"));
        assert_eq!(field(Some(&json!("octocat"))).as_deref(), Some("octocat"));
        assert_eq!(field(Some(&json!(1.5))), None);
        assert_eq!(field(Some(&json!(""))), None);
        assert_eq!(field(Some(&json!("a\nb"))), None);
        assert_eq!(field(Some(&json!("x".repeat(257)))), None);
        assert_eq!(field(Some(&json!({"id": 1}))), None);
        assert_eq!(field(None), None);
    }
}
