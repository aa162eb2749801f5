//! Console sign-in: this deployment as an OpenID relying party (authorization code flow with
//! PKCE, RFC 7636, and the `iss` authorization-response parameter, RFC 9207).
//!
//! The caller (the console) keeps `state`, `nonce` and the PKCE verifier server-side, bound to
//! the browser, and takes them back exactly once. Here: the authorization URL, the code
//! exchange (a confidential client authenticates with `client_secret_basic`; the token
//! endpoint comes from discovery, answers are bounded and never followed elsewhere), and the
//! ID token's checks: the issuer's own keys, `iss`, `aud` = our client id (and `azp` when there
//! are several audiences), `exp`/`iat`/`nbf` within the skew, and `nonce` equal to ours.

use std::collections::HashMap;

use aws_lc_rs::{constant_time, digest, rand};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::Validation;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::settings::{ConsoleClient, OidcIssuer};
use crate::{Error, Federation, Identity, algorithm, allowed, identity_of, names_its_own_key, now_secs};

/// What an authorization request needs remembered until its callback.
#[derive(Debug)]
pub struct AuthRequest {
    /// Where to send the browser.
    pub url: String,
    pub state: String,
    pub nonce: String,
    /// The PKCE code verifier (its S256 challenge is in `url`).
    pub verifier: String,
}

/// A person signed in at an issuer.
#[derive(Clone, Debug)]
pub struct SignedIn {
    pub identity: Identity,
    /// The `email` claim, when the issuer says it is verified (or does not say).
    pub email: Option<String>,
    pub name: Option<String>,
    /// When the person last authenticated at the provider (`auth_time`, Unix seconds), if it
    /// says.
    pub auth_time: Option<i64>,
}

/// What the callback brought back, besides the code.
#[derive(Clone, Copy, Debug)]
pub struct Callback<'a> {
    pub code: &'a str,
    /// RFC 9207's `iss`, if the issuer sent one.
    pub iss: Option<&'a str>,
}

/// 256 random bits, base64url.
pub(crate) fn random() -> Result<String, Error> {
    let mut b = [0u8; 32];
    rand::fill(&mut b).map_err(|_| Error::Unavailable)?;
    Ok(URL_SAFE_NO_PAD.encode(b))
}

/// RFC 7636's S256 challenge of a verifier.
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()))
}

fn same(a: &str, b: &str) -> bool {
    constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// Client secrets of console issuers, by issuer name.
pub type ClientSecrets = HashMap<String, SecretString>;

impl Federation {
    /// Issuers people may sign in to the console with.
    pub fn console_issuers(&self) -> impl Iterator<Item = &OidcIssuer> {
        self.issuers.iter().map(|i| i.config()).filter(|c| c.console.is_some())
    }

    /// Client secrets for console issuers (resolved by the binary from their references).
    pub fn with_client_secrets(mut self, secrets: ClientSecrets) -> Federation {
        self.client_secrets = secrets;
        self
    }

    fn console_issuer(&self, name: &str) -> Result<(&crate::Issuer, &ConsoleClient), Error> {
        self.issuers
            .iter()
            .find_map(|i| i.config().console.as_ref().filter(|_| i.config().name == name).map(|c| (&**i, c)))
            .ok_or(Error::Invalid("unknown issuer"))
    }

    /// Where to send a browser signing out of a session that came from the issuer named
    /// `name`, so it is signed out there too: its `end_session_endpoint` with our client id (and
    /// where to come back), if the issuer's console client asks for it and the provider offers
    /// it; `None` otherwise.
    pub async fn end_session_url(&self, name: &str) -> Result<Option<String>, Error> {
        let (issuer, client) = self.console_issuer(name)?;
        if !client.sign_out_at_provider {
            return Ok(None);
        }
        let Some(endpoint) = issuer.discovery().await?.end_session_endpoint.clone() else { return Ok(None) };
        let mut url = url::Url::parse(&endpoint).map_err(|_| Error::Unavailable)?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", &client.client_id);
            if let Some(back) = &client.post_logout_redirect_uri {
                q.append_pair("post_logout_redirect_uri", back);
            }
        }
        Ok(Some(url.into()))
    }

    /// A fresh authorization request to the issuer named `name`. `reauth` asks the provider to
    /// authenticate the person again whatever session it holds (`prompt=login`, `max_age=0`):
    /// the ID token's `auth_time` then says whether it did.
    pub async fn authorization_request(&self, name: &str, reauth: bool) -> Result<AuthRequest, Error> {
        let (issuer, client) = self.console_issuer(name)?;
        let endpoints = issuer.discovery().await?;
        let (state, nonce, verifier) = (random()?, random()?, random()?);
        let mut url = url::Url::parse(&endpoints.authorization_endpoint).map_err(|_| Error::Unavailable)?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &client.client_id)
            .append_pair("redirect_uri", &client.redirect_uri)
            .append_pair("scope", &client.scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge(&verifier))
            .append_pair("code_challenge_method", "S256");
        if reauth {
            url.query_pairs_mut().append_pair("prompt", "login").append_pair("max_age", "0");
        }
        Ok(AuthRequest { url: url.into(), state, nonce, verifier })
    }

    /// Finishes a sign-in: checks the response's issuer, exchanges the code (with the PKCE
    /// verifier) and verifies the ID token against `nonce`.
    pub async fn complete_sign_in(
        &self,
        name: &str,
        cb: Callback<'_>,
        verifier: &str,
        nonce: &str,
    ) -> Result<SignedIn, Error> {
        let (issuer, client) = self.console_issuer(name)?;
        let cfg = issuer.config();
        let endpoints = issuer.discovery().await?;
        // RFC 9207: the response names its issuer (mix-up defence); required when the issuer
        // says it sends one
        match cb.iss {
            Some(iss) if iss != cfg.issuer => return Err(Error::Invalid("response from another issuer")),
            None if endpoints.iss_parameter => return Err(Error::Invalid("response without its issuer")),
            _ => {}
        }
        if cb.code.is_empty() || cb.code.len() > 2048 {
            return Err(Error::Invalid("code"));
        }
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", cb.code)
            .append_pair("redirect_uri", &client.redirect_uri)
            .append_pair("code_verifier", verifier)
            .finish();
        let secret = self.client_secrets.get(name);
        let form = match secret {
            Some(_) => form,
            None => format!(
                "{form}&client_id={}",
                url::form_urlencoded::byte_serialize(client.client_id.as_bytes()).collect::<String>()
            ),
        };
        let mut req = issuer
            .http()
            .post(&endpoints.token_endpoint)
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(http::header::ACCEPT, "application/json")
            .body(form);
        if let Some(secret) = secret {
            // RFC 6749 2.3.1: both parts form-encoded before they are joined
            let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", enc(&client.client_id), enc(secret.expose_secret()));
            req = req.header(http::header::AUTHORIZATION, format!("Basic {}", STANDARD.encode(pair)));
        }
        let answer = issuer.read_json(req.send().await.map_err(|_| Error::Unavailable)?, true).await?;
        let id_token = answer.get("id_token").and_then(Value::as_str).ok_or(Error::Invalid("no ID token"))?;
        self.verify_id_token(issuer, &client.client_id, id_token, nonce).await
    }

    async fn verify_id_token(
        &self,
        issuer: &crate::Issuer,
        client_id: &str,
        token: &str,
        nonce: &str,
    ) -> Result<SignedIn, Error> {
        let cfg = issuer.config();
        if token.len() > crate::MAX_TOKEN_BYTES {
            return Err(Error::Invalid("too long"));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| Error::Invalid("header"))?;
        if names_its_own_key(&header) {
            return Err(Error::Invalid("header names its own key"));
        }
        // an access token is not an ID token
        if header.typ.as_deref().is_some_and(|t| t.to_ascii_lowercase().contains("at+jwt")) {
            return Err(Error::Invalid("not an ID token"));
        }
        let alg = allowed(header.alg).filter(|a| cfg.algorithms.contains(a)).ok_or(Error::Invalid("algorithm"))?;
        let key = issuer.key(header.kid.as_deref(), alg).await?;
        let mut v = Validation::new(algorithm(alg));
        v.set_issuer(&[&cfg.issuer]);
        v.set_audience(&[client_id]);
        v.leeway = cfg.clock_skew.as_secs();
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Value>(token, &key, &v)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => Error::Expired,
                _ => Error::Invalid("ID token signature or claims"),
            })?
            .claims;
        if !claims.get("nonce").and_then(Value::as_str).is_some_and(|n| same(n, nonce)) {
            return Err(Error::Invalid("nonce"));
        }
        let several = claims.get("aud").and_then(Value::as_array).is_some_and(|a| a.len() > 1);
        match claims.get("azp").and_then(Value::as_str) {
            Some(azp) if azp != client_id => return Err(Error::Invalid("azp")),
            None if several => return Err(Error::Invalid("azp")),
            _ => {}
        }
        let skew = i64::try_from(cfg.clock_skew.as_secs()).unwrap_or(0);
        if claims.get("iat").and_then(Value::as_i64).is_some_and(|iat| iat > now_secs() + skew) {
            return Err(Error::Invalid("issued in the future"));
        }
        let verified = claims.get("email_verified").and_then(Value::as_bool) != Some(false);
        let text = |k: &str| claims.get(k).and_then(Value::as_str).filter(|s| !s.is_empty() && s.len() <= 256);
        let email = text("email").filter(|_| verified).map(str::to_owned);
        let name = text("name").map(str::to_owned);
        let auth_time = claims.get("auth_time").and_then(Value::as_i64);
        let identity = identity_of(cfg, claims)?;
        Ok(SignedIn { identity, email, name, auth_time })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::json;

    use super::*;
    use crate::settings::{ClaimMap, JwtAlg};

    const ISS: &str = "https://idp.example.com";

    #[test]
    fn the_challenge_is_rfc_7636s_example() {
        // RFC 7636, appendix B
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    fn issuer_config() -> OidcIssuer {
        OidcIssuer {
            name: "corp".into(),
            issuer: ISS.into(),
            jwks_uri: None,
            audiences: Vec::new(),
            algorithms: vec![JwtAlg::Es256],
            data_plane: false,
            control_plane: false,
            claims: ClaimMap {
                subject: "/sub".into(),
                org: Some("/org".into()),
                project: None,
                roles: Some("/roles".into()),
            },
            default_org: None,
            default_project: None,
            roles: BTreeMap::new(),
            admin_roles: BTreeMap::from([("admins".to_owned(), "org_admin".to_owned())]),
            require_access_token_type: true,
            console: Some(ConsoleClient {
                client_id: "console".into(),
                client_secret: None,
                redirect_uri: "https://gw.example.com/sign-in/oidc/callback".into(),
                scopes: vec!["openid".into()],
                jit_membership: false,
                sign_out_at_provider: false,
                post_logout_redirect_uri: None,
            }),
            clock_skew: Duration::from_secs(5),
            jwks_refresh: Duration::from_secs(300),
            unknown_kid_cooldown: Duration::from_secs(30),
            fetch_timeout: Duration::from_secs(1),
            max_document_bytes: 65536,
        }
    }

    /// A federation whose one issuer publishes a key we hold, and that key.
    fn setup() -> (Federation, EncodingKey) {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref().to_vec();
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])});
        let issuer = crate::Issuer::new(issuer_config()).unwrap();
        issuer.install_keys(&json!({"keys": [jwk]}));
        let fed = Federation {
            issuers: vec![Arc::new(issuer)],
            client_secrets: ClientSecrets::default(),
            verified: quick_cache::sync::Cache::new(16),
            oauth: Vec::new(),
        };
        (fed, EncodingKey::from_ec_der(pkcs8.as_ref()))
    }

    fn claims() -> Value {
        let now = now_secs();
        json!({"iss": ISS, "aud": "console", "sub": "ann", "exp": now + 300, "iat": now, "nonce": "n-1",
               "org": "acme", "roles": ["admins"], "email": "ann@example.com", "name": "Ann"})
    }

    fn sign(key: &EncodingKey, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, key).unwrap()
    }

    fn header() -> Header {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("k1".into());
        h
    }

    #[tokio::test]
    async fn an_id_token_must_be_ours_fresh_and_carry_our_nonce() {
        let (fed, key) = setup();
        let issuer = fed.issuers[0].clone();
        let check = |t: String| {
            let (fed, issuer) = (&fed, issuer.clone());
            async move { fed.verify_id_token(&issuer, "console", &t, "n-1").await }
        };
        let ok = check(sign(&key, &header(), &claims())).await.unwrap();
        assert_eq!((&*ok.identity.subject, ok.identity.org.as_str()), ("ann", "acme"));
        assert_eq!(ok.email.as_deref(), Some("ann@example.com"));

        let with = |k: &str, v: Value| {
            let mut c = claims();
            c[k] = v;
            c
        };
        let now = now_secs();
        let refused = [
            ("another nonce (a replayed or injected token)", with("nonce", json!("n-2"))),
            ("no nonce", {
                let mut c = claims();
                c.as_object_mut().unwrap().remove("nonce");
                c
            }),
            ("for another client", with("aud", json!("someone-else"))),
            ("several audiences and no azp", with("aud", json!(["console", "other"]))),
            ("azp naming another client", with("azp", json!("other"))),
            ("another issuer", with("iss", json!("https://evil.example.com"))),
            ("issued in the future", with("iat", json!(now + 600))),
            ("no subject", {
                let mut c = claims();
                c.as_object_mut().unwrap().remove("sub");
                c
            }),
        ];
        for (what, c) in refused {
            assert!(matches!(check(sign(&key, &header(), &c)).await, Err(Error::Invalid(_))), "{what}");
        }
        assert_eq!(check(sign(&key, &header(), &with("exp", json!(now - 60)))).await.unwrap_err(), Error::Expired);
        // an access token is not an ID token, even when signed by the issuer
        let mut at = header();
        at.typ = Some("at+jwt".into());
        assert!(check(sign(&key, &at, &claims())).await.is_err());
        // a key we did not publish
        let (_, stranger) = setup();
        assert!(check(sign(&stranger, &header(), &claims())).await.is_err());
        // an email the issuer says it has not verified is not used
        let unverified = check(sign(&key, &header(), &with("email_verified", json!(false)))).await.unwrap();
        assert_eq!(unverified.email, None);
    }
}
