//! A GitHub-style OAuth 2.0 provider on an ephemeral port, as GitHub documents its web flow:
//! `GET /login/oauth/authorize` signs the scripted person in at once and redirects back with a
//! code; `POST /login/oauth/access_token` checks the client (HTTP Basic or the form), the code
//! (once), the redirect URI and the PKCE verifier, and refuses the way GitHub does (200 with an
//! `error` field); `GET /user` and `GET /user/emails` answer for the access token and, like
//! GitHub's API, refuse a request without a User-Agent.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use aws_lc_rs::digest;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// Who the provider signs in: GitHub's numeric id, login, and addresses as
/// `(email, verified, primary)`.
#[derive(Clone, Debug)]
pub struct Person {
    pub id: u64,
    pub login: String,
    pub emails: Vec<(String, bool, bool)>,
}

struct Grant {
    person: Person,
    redirect_uri: String,
    challenge: String,
}

struct Shared {
    client_id: String,
    client_secret: String,
    person: ArcSwap<Person>,
    codes: tokio::sync::Mutex<HashMap<String, Grant>>,
    tokens: tokio::sync::Mutex<HashMap<String, Person>>,
    next: AtomicU64,
    /// Code exchanges attempted, refused ones included.
    exchanges: AtomicU64,
}

pub struct FakeOAuth {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeOAuth {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeOAuth {
    pub async fn start(client_id: &str, client_secret: &str, person: Person) -> FakeOAuth {
        let shared = Arc::new(Shared {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            person: ArcSwap::from_pointee(person),
            codes: tokio::sync::Mutex::default(),
            tokens: tokio::sync::Mutex::default(),
            next: AtomicU64::new(1),
            exchanges: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/login/oauth/authorize", get(authorize))
            .route("/login/oauth/access_token", post(access_token))
            .route("/user", get(user))
            .route("/user/emails", get(emails))
            .with_state(shared.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("fake OAuth bind: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("fake OAuth address: {e}"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeOAuth { addr, shared, task }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Who the next authorization signs in.
    pub fn sign_in_as(&self, person: Person) {
        self.shared.person.store(Arc::new(person));
    }

    pub fn exchanges(&self) -> u64 {
        self.shared.exchanges.load(Ordering::Relaxed)
    }

    /// The `[[oauth]]` entry for this provider, for a console at `console` (its base URL).
    pub fn config(&self, name: &str, org: &str, console: &str) -> String {
        let base = self.base_url();
        format!(
            "[[oauth]]\nname = \"{name}\"\nauthorization_endpoint = \"{base}/login/oauth/authorize\"\n\
             token_endpoint = \"{base}/login/oauth/access_token\"\nuser_endpoint = \"{base}/user\"\n\
             emails_endpoint = \"{base}/user/emails\"\nclient_id = \"{}\"\nclient_secret = \"env:FAKE_OAUTH_SECRET\"\n\
             token_auth = \"client_secret_post\"\nredirect_uri = \"{console}/sign-in/oauth/callback\"\n\
             scopes = [\"read:user\", \"user:email\"]\norg = \"{org}\"\n",
            self.shared.client_id
        )
    }
}

fn random(s: &Shared, prefix: &str) -> String {
    let mut b = [0u8; 16];
    let _ = aws_lc_rs::rand::fill(&mut b);
    format!("{prefix}{}{}", s.next.fetch_add(1, Ordering::Relaxed), URL_SAFE_NO_PAD.encode(b))
}

async fn authorize(State(s): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let p = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    if p("client_id") != s.client_id || p("response_type") != "code" || p("code_challenge_method") != "S256" {
        return (StatusCode::BAD_REQUEST, "bad authorization request").into_response();
    }
    let code = random(&s, "code-");
    let grant = Grant {
        person: (**s.person.load()).clone(),
        redirect_uri: p("redirect_uri").to_owned(),
        challenge: p("code_challenge").to_owned(),
    };
    s.codes.lock().await.insert(code.clone(), grant);
    let mut back = match url::Url::parse(p("redirect_uri")) {
        Ok(u) => u,
        Err(_) => return (StatusCode::BAD_REQUEST, "bad redirect_uri").into_response(),
    };
    back.query_pairs_mut().append_pair("code", &code).append_pair("state", p("state"));
    Redirect::to(back.as_str()).into_response()
}

fn refused(error: &str) -> Response {
    // GitHub answers a failed exchange with 200 and an error field
    axum::Json(json!({"error": error, "error_description": "fake says no"})).into_response()
}

async fn access_token(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let f: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    s.exchanges.fetch_add(1, Ordering::Relaxed);
    let field = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let client_ok = match basic {
        Some(pair) => pair == format!("{}:{}", s.client_id, s.client_secret),
        None => field("client_id") == s.client_id && field("client_secret") == s.client_secret,
    };
    if !client_ok {
        return refused("incorrect_client_credentials");
    }
    let Some(grant) = s.codes.lock().await.remove(field("code")) else { return refused("bad_verification_code") };
    if field("redirect_uri") != grant.redirect_uri {
        return refused("redirect_uri_mismatch");
    }
    let challenge = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, field("code_verifier").as_bytes()));
    if challenge != grant.challenge {
        return refused("bad_verification_code");
    }
    let token = random(&s, "gho_");
    s.tokens.lock().await.insert(token.clone(), grant.person);
    axum::Json(json!({"access_token": token, "token_type": "bearer", "scope": "read:user,user:email"})).into_response()
}

async fn person(s: &Shared, headers: &HeaderMap) -> Result<Person, Response> {
    if !headers.contains_key(header::USER_AGENT) {
        return Err((
            StatusCode::FORBIDDEN,
            "Request forbidden by administrative rules. Please make sure your request has a User-Agent header",
        )
            .into_response());
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    match s.tokens.lock().await.get(token) {
        Some(p) => Ok(p.clone()),
        None => Err((StatusCode::UNAUTHORIZED, axum::Json(json!({"message": "Bad credentials"}))).into_response()),
    }
}

async fn user(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match person(&s, &headers).await {
        // GitHub shows only a public email here, and says nothing of verification
        Ok(p) => {
            axum::Json(json!({"id": p.id, "login": p.login, "name": Value::Null, "email": Value::Null})).into_response()
        }
        Err(r) => r,
    }
}

async fn emails(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match person(&s, &headers).await {
        Ok(p) => axum::Json(
            p.emails
                .iter()
                .map(|(e, verified, primary)| json!({"email": e, "verified": verified, "primary": primary, "visibility": null}))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(r) => r,
    }
}
