//! The web console through the real binary, as a browser would drive it: cookies, redirects,
//! `Origin`, forms. (Rendering in a real Chromium is tests/python/test_console_browser.py.)

use std::time::Duration;

use gatehouse_testkit::TestGateway;
use gatehouse_testkit::webauthn::Authenticator;
use reqwest::Method;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use crate::common::{as_root, call, gateway, mint, new_org, root};

const COOKIE: &str = "__Host-gatehouse-session";

/// A browser: no redirects followed, one cookie jar slot, `Origin` sent on every POST.
pub struct Browser {
    http: reqwest::Client,
    base: String,
    pub cookie: Option<String>,
}

pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers.get(LOCATION).map_or("", |v| v.to_str().unwrap())
    }

    /// The value of the first hidden `csrf` field.
    pub fn csrf(&self) -> String {
        between(&self.body, r#"name="csrf" value=""#, "\"").unwrap().to_owned()
    }
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    let len = s[from..].find(end)?;
    Some(&s[from..from + len])
}

impl Browser {
    pub fn new(gw: &TestGateway) -> Browser {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Browser { http, base: gw.admin_url.clone(), cookie: None }
    }

    async fn send(&mut self, rb: reqwest::RequestBuilder) -> Page {
        let rb = match &self.cookie {
            Some(c) => rb.header("cookie", format!("{COOKIE}={c}")),
            None => rb,
        };
        let resp = rb.send().await.unwrap();
        let headers = resp.headers().clone();
        for v in headers.get_all(SET_COOKIE) {
            let v = v.to_str().unwrap();
            if let Some(rest) = v.strip_prefix(&format!("{COOKIE}=")) {
                let value = rest.split(';').next().unwrap();
                self.cookie = (!value.is_empty()).then(|| value.to_owned());
            }
        }
        Page { status: resp.status().as_u16(), headers, body: resp.text().await.unwrap() }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let rb = self.http.get(format!("{}{path}", self.base));
        self.send(rb).await
    }

    /// A page this browser is sent to from elsewhere (a provider's redirect back), carrying the
    /// sign-in's `__Host-gatehouse-login` cookie when it has one.
    pub async fn arrive(&mut self, url: &str, login: Option<&str>) -> Page {
        let mut rb = self.http.get(url);
        if let Some(l) = login {
            rb = rb.header("cookie", format!("__Host-gatehouse-login={l}"));
        }
        self.send(rb).await
    }

    /// A form post from a page of this origin.
    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let origin = self.base.clone();
        self.post_from(path, form, Some(&origin)).await
    }

    pub async fn post_from(&mut self, path: &str, form: &[(&str, &str)], origin: Option<&str>) -> Page {
        let mut rb = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap());
        if let Some(o) = origin {
            rb = rb.header("origin", o);
        }
        self.send(rb).await
    }

    /// A ceremony call from the console's script: JSON, from this origin.
    pub async fn post_json(&mut self, path: &str, body: &Value) -> (u16, Value) {
        let rb = self.http.post(format!("{}{path}", self.base)).header("origin", self.base.clone()).json(body);
        let page = self.send(rb).await;
        (page.status, serde_json::from_str(&page.body).unwrap_or(Value::Null))
    }

    pub async fn sign_in(&mut self, token: &str) -> Page {
        self.post("/sign-in", &[("token", token), ("next", "/")]).await
    }

    /// This session's id, as the overview shows it.
    pub async fn session_id(&mut self) -> String {
        let page = self.get("/").await;
        assert_eq!(page.status, 200, "{}", page.body);
        between(&page.body, r#"id="session-id">"#, "<").unwrap().to_owned()
    }
}

/// A browser signed in with `token`.
pub async fn signed_in(gw: &TestGateway, token: &str) -> Browser {
    let mut b = Browser::new(gw);
    let page = b.sign_in(token).await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert!(b.cookie.is_some());
    b
}

async fn audit_actions(gw: &TestGateway) -> Vec<(String, String, String)> {
    let (_, v) = as_root(gw, Method::GET, "/admin/v1/audit?limit=1000", None).await;
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |f: &str| e[f].as_str().unwrap_or("").to_owned();
            (s("action"), s("outcome"), s("code"))
        })
        .collect()
}

#[tokio::test]
async fn signing_in_sets_a_hardened_cookie_and_pages_carry_a_strict_policy() {
    let gw = gateway().spawn().await;
    let mut b = Browser::new(&gw);

    // no session: to the sign-in page, remembering where the browser was going
    let page = b.get("/keys?org=default").await;
    assert_eq!(page.status, 303);
    assert_eq!(page.location(), "/sign-in?next=%2Fkeys%3Forg%3Ddefault");

    let page = b.get("/sign-in").await;
    assert_eq!(page.status, 200);
    let h = &page.headers;
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("form-action 'self'") && csp.contains("base-uri 'none'"), "{csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(!page.body.contains("<script>"), "no inline script");

    let page = b.post("/sign-in", &[("token", &root(&gw)), ("next", "/keys?org=default")]).await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location(), "/keys?org=default");
    let set = page.headers[SET_COOKIE].to_str().unwrap();
    let attrs: Vec<&str> = set.split("; ").collect();
    assert!(attrs[0].starts_with(&format!("{COOKIE}=")), "{set}");
    for a in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(attrs.contains(&a), "{set} lacks {a}");
    }
    assert!(!set.contains("Domain") && !set.contains("Max-Age") && !set.contains("Expires"), "{set}");
    // the secret is never the stored form: the session list shows ids only
    let (_, sessions) = as_root(&gw, Method::GET, "/admin/v1/sessions", None).await;
    let listed = sessions.to_string();
    assert!(!listed.contains(b.cookie.as_deref().unwrap()), "{listed}");
    assert!(!listed.contains("csrf"), "{listed}");

    let page = b.get("/").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("platform_admin"));
    let page = b.get("/keys?org=default").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("quickstart"), "the bootstrap key is listed");
    // the stylesheet and script come from this origin
    let css = b.get("/assets/console.css").await;
    assert_eq!((css.status, css.headers["content-type"].to_str().unwrap()), (200, "text/css; charset=utf-8"));
    assert_eq!(b.get("/assets/../Cargo.toml").await.status, 404);

    let actions = audit_actions(&gw).await;
    assert!(actions.contains(&("console.sign_in".into(), "allowed".into(), "ok".into())), "{actions:?}");
    // the console's pages ran the API's services, audited under the API's actions
    assert!(actions.iter().any(|(a, o, _)| a == "key.list" && o == "allowed"), "{actions:?}");

    // signing out ends the session on the server, not only in the browser
    let csrf = b.get("/").await.csrf();
    let old = b.cookie.clone().unwrap();
    let page = b.post("/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!((page.status, page.location()), (303, "/sign-in"));
    assert!(b.cookie.is_none(), "the cookie is cleared");
    b.cookie = Some(old);
    assert_eq!(b.get("/").await.status, 303, "a signed-out session is over");
    assert!(audit_actions(&gw).await.iter().any(|(a, _, _)| a == "console.sign_out"));
}

#[tokio::test]
async fn a_token_signs_in_once_by_default_and_failures_lock_the_source_out() {
    let gw = gateway().config("[console]\nsign_in_failures_per_source = 3\nlockout_ms = 60000").spawn().await;
    signed_in(&gw, &root(&gw)).await;
    let mut b = Browser::new(&gw);
    let page = b.sign_in(&root(&gw)).await;
    assert_eq!(page.status, 403, "each admin token signs in once");
    assert!(page.body.contains("already been used"), "{}", page.body);
    assert!(b.cookie.is_none());

    // three wrong tokens from one source, then even a good one is turned away for a while
    let (_, fresh) = mint(&gw, &root(&gw), "platform_admin", None).await;
    let fresh = fresh["token"].as_str().unwrap().to_owned();
    // the fresh token with its last character changed (to one it is not)
    let (head, last) = fresh.split_at(fresh.len() - 1);
    let near_miss = format!("{head}{}", if last == "x" { "y" } else { "x" });
    for wrong in ["gtha_nope", &near_miss, "eyJhbGciOiJub25lIn0.e30."] {
        let page = b.sign_in(wrong).await;
        assert_eq!(page.status, 401, "{}", page.body);
        assert!(!page.body.contains(wrong), "a refused credential is never echoed");
    }
    let page = b.sign_in(&fresh).await;
    assert_eq!(page.status, 429, "{}", page.body);
    let wait: u64 = page.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((50..=60).contains(&wait), "{wait}");
    assert!(b.cookie.is_none());

    let actions = audit_actions(&gw).await;
    let lockouts = actions.iter().filter(|(a, _, _)| a == "console.lockout").count();
    assert_eq!(lockouts, 1, "{actions:?}");
    let denied = actions.iter().filter(|(a, o, _)| a == "console.sign_in" && o == "denied").count();
    assert_eq!(denied, 5, "the reused token, three wrong ones, the locked-out try: {actions:?}");

    // `always` lets a token start sessions again and again; `off` lets none start
    let gw = gateway().config("[console]\ntoken_sign_in = \"always\"").spawn().await;
    signed_in(&gw, &root(&gw)).await;
    signed_in(&gw, &root(&gw)).await;
    let gw = gateway().config("[console]\ntoken_sign_in = \"off\"").spawn().await;
    assert_eq!(Browser::new(&gw).sign_in(&root(&gw)).await.status, 403);
}

#[tokio::test]
async fn forms_are_taken_only_from_this_origin_with_the_session_token() {
    let gw = gateway().spawn().await;
    let mut b = signed_in(&gw, &root(&gw)).await;
    let csrf = b.get("/keys").await.csrf();

    // a cross-site form post, with or without the token, is refused and changes nothing
    let forged = |csrf: &str| vec![("csrf", csrf.to_owned()), ("name", "forged".to_owned())];
    for (origin, token) in [(Some("http://evil.example"), csrf.as_str()), (None, "wrong"), (None, "")] {
        let f = forged(token);
        let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = match origin {
            Some(o) => b.post_from("/keys", &f, Some(o)).await,
            None => b.post("/keys", &f).await,
        };
        assert_eq!(page.status, 403, "{origin:?} {token:?}: {}", page.body);
        assert!(page.body.contains("permission_denied"));
    }
    let resp = gw
        .http
        .post(format!("{}/keys", gw.admin_url))
        .header("cookie", format!("{COOKIE}={}", b.cookie.as_deref().unwrap()))
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string([("csrf", csrf.as_str()), ("name", "forged")]).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let (_, keys) = as_root(&gw, Method::GET, "/admin/v1/keys", None).await;
    assert!(!keys.to_string().contains("forged"), "{keys}");
    // a sign-in posted from another site is refused too (login CSRF)
    let page = Browser::new(&gw).post_from("/sign-in", &[("token", "x")], Some("https://evil.example")).await;
    assert_eq!(page.status, 403);

    // from this origin with the token: created, the secret shown once, and it works
    let page = b.post("/keys", &[("csrf", &csrf), ("name", "from-console"), ("org", ""), ("project", "")]).await;
    assert_eq!(page.status, 201, "{}", page.body);
    let secret = between(&page.body, r#"id="secret">"#, "<").unwrap().to_owned();
    assert!(secret.starts_with("gth_"), "{secret}");
    assert!(page.body.contains("data-copy=\"secret\""));
    let models = |key: String| {
        let http = gw.http.clone();
        let url = format!("{}/v1/models", gw.data_url);
        async move { http.get(url).bearer_auth(key).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(models(secret.clone()).await, 200);

    // revoked from the key list: the key stops working
    let list = b.get("/keys").await;
    let id = between(&list.body, r#"action="/keys/"#, "/rotate").unwrap().to_owned();
    let (_, k) = as_root(&gw, Method::GET, &format!("/admin/v1/keys/{id}"), None).await;
    assert_eq!(k["name"], "from-console", "the newest key is listed first");
    let page = b.post(&format!("/keys/{id}/revoke"), &[("csrf", &csrf), ("org", "")]).await;
    assert_eq!(page.status, 303, "{}", page.body);
    let stopped = gatehouse_testkit::eventually(Duration::from_secs(2), || {
        let m = models(secret.clone());
        async move { m.await == 401 }
    });
    assert!(stopped.await, "a revoked key stops within a second");
    // a path parameter that is not an id names nothing
    assert_eq!(b.post("/keys/not-an-id/revoke", &[("csrf", &csrf), ("org", "")]).await.status, 404);
}

#[tokio::test]
async fn a_planted_session_never_becomes_signed_in_and_next_stays_on_this_origin() {
    let gw = gateway().config("[console]\ntoken_sign_in = \"always\"").spawn().await;
    // fixation: an id chosen before sign-in is replaced, and never works
    let mut b = Browser::new(&gw);
    let planted = "A".repeat(43);
    b.cookie = Some(planted.clone());
    assert_eq!(b.sign_in(&root(&gw)).await.status, 303);
    let issued = b.cookie.clone().unwrap();
    assert_ne!(issued, planted);
    let mut attacker = Browser::new(&gw);
    attacker.cookie = Some(planted);
    assert_eq!(attacker.get("/").await.status, 303);

    // signing in again rotates: the old session ends
    assert_eq!(b.sign_in(&root(&gw)).await.status, 303);
    assert_ne!(b.cookie.as_deref(), Some(issued.as_str()));
    let mut old = Browser::new(&gw);
    old.cookie = Some(issued);
    assert_eq!(old.get("/").await.status, 303);

    for next in ["//evil.example/", "/\\evil.example", "https://evil.example/", "/%0d%0aSet-Cookie:x=1", "javascript:x"]
    {
        let page = Browser::new(&gw).post("/sign-in", &[("token", &root(&gw)), ("next", next)]).await;
        assert_eq!(page.status, 303);
        assert_eq!(page.location(), "/", "{next}");
    }
}

#[tokio::test]
async fn sessions_end_on_revocation_expiry_and_when_their_token_is_revoked() {
    let gw =
        gateway().config("[console]\nsession_max_lifetime_ms = 3000\nsession_idle_timeout_ms = 3000").spawn().await;
    let acme = new_org(&gw, "acme").await;
    let (_, admin) = mint(&gw, &root(&gw), "org_admin", Some(&acme)).await;
    let (_, viewer) = mint(&gw, &root(&gw), "viewer", Some(&acme)).await;
    let (_, member) = mint(&gw, &root(&gw), "member", Some(&acme)).await;
    let token = |v: &Value| v["token"].as_str().unwrap().to_owned();

    // the viewer sees keys but may not act on them; the member may not read the audit trail
    let mut v = signed_in(&gw, &token(&viewer)).await;
    let page = v.get("/keys").await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("/revoke\"") && !page.body.contains("Create key"), "{}", page.body);
    assert!(page.body.contains("href=\"/audit\""), "viewers read the audit trail");
    let mut m = signed_in(&gw, &token(&member)).await;
    let page = m.get("/audit").await;
    assert_eq!(page.status, 403);
    assert!(page.body.contains("permission_denied") && !page.body.contains("href=\"/audit\""));

    // an org admin sees its org's sessions and ends the viewer's; the member cannot end anyone's
    let viewer_session = v.session_id().await;
    let mut a = signed_in(&gw, &token(&admin)).await;
    let (st, listed) = call(&gw, &token(&member), Method::GET, "/admin/v1/sessions", None).await;
    assert_eq!(st, 200);
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "a member sees only its own: {listed}");
    let path = format!("/admin/v1/sessions/{viewer_session}/revoke");
    assert_eq!(call(&gw, &token(&member), Method::POST, &path, None).await.0, 404);
    let csrf = a.get("/sessions").await.csrf();
    let page = a.post(&format!("/sessions/{viewer_session}/revoke"), &[("csrf", &csrf)]).await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(v.get("/").await.status, 303, "revoked at once");

    // revoking the admin token a session came from ends the session
    let (st, _) =
        as_root(&gw, Method::POST, &format!("/admin/v1/tokens/{}/revoke", member["id"].as_str().unwrap()), None).await;
    assert_eq!(st, 200);
    assert_eq!(m.get("/").await.status, 303);

    // and every session ends at its absolute deadline, used or not
    assert_eq!(a.get("/").await.status, 200);
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_eq!(a.get("/").await.status, 303);
    let actions = audit_actions(&gw).await;
    assert!(actions.iter().any(|(a, o, _)| a == "session.revoke" && o == "allowed"), "{actions:?}");
}

fn sso_config(op: &gatehouse_testkit::oidc::OpenIdProvider) -> String {
    format!(
        r#"
[[oidc]]
name = "corp"
issuer = "{}"
planes = ["console"]
claims = {{ org = "/org", roles = "/roles" }}
admin_roles = {{ "console-admins" = "org_admin" }}
client_id = "console"
client_secret = "env:CONSOLE_CLIENT_SECRET"
redirect_uri = "http://127.0.0.1:1/sign-in/oidc/callback"

[console]
sign_in_failures_per_source = 100
"#,
        op.issuer
    )
}

/// Starts a sign-in at the provider: the login cookie's value and the authorization request's
/// query, as the browser would follow it.
async fn start_sso(b: &mut Browser) -> (String, Vec<(String, String)>) {
    let page = b.get("/sign-in/oidc/corp?next=%2Fkeys").await;
    assert_eq!(page.status, 303, "{}", page.body);
    let set = page.headers[SET_COOKIE].to_str().unwrap();
    let attrs: Vec<&str> = set.split("; ").collect();
    for a in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax", "Max-Age=600"] {
        assert!(attrs.contains(&a), "{set} lacks {a}");
    }
    let login = attrs[0].strip_prefix("__Host-gatehouse-login=").unwrap().to_owned();
    let to = url::Url::parse(page.location()).unwrap();
    (login, to.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
}

#[tokio::test]
async fn single_sign_on_requests_use_pkce_and_a_callback_is_taken_once_by_its_own_browser() {
    let Some(op) = gatehouse_testkit::oidc::OpenIdProvider::start(0, "g1").await else { return };
    let gw = gateway().config(&sso_config(&op)).env("CONSOLE_CLIENT_SECRET", "console-secret").spawn().await;
    let mut b = Browser::new(&gw);
    let page = b.get("/sign-in").await;
    assert!(page.body.contains(r#"href="/sign-in/oidc/corp?next=%2F""#), "{}", page.body);

    let (login, q) = start_sso(&mut b).await;
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    assert_eq!(get("response_type"), "code");
    assert_eq!(get("client_id"), "console");
    assert_eq!(get("redirect_uri"), "http://127.0.0.1:1/sign-in/oidc/callback");
    assert_eq!(get("code_challenge_method"), "S256");
    assert_eq!(get("code_challenge").len(), 43);
    assert!(get("state").len() == 43 && get("nonce").len() == 43 && get("state") != get("nonce"));
    assert!(get("scope").split(' ').any(|s| s == "openid"));
    // the verifier never leaves the gateway
    assert!(!q.iter().any(|(k, _)| k == "code_verifier"));

    let http = b.http.clone();
    let callback = |login: Option<&str>, query: String| {
        let http = http.clone();
        let url = format!("{}/sign-in/oidc/callback?{query}", gw.admin_url);
        let cookie = login.map(|l| format!("__Host-gatehouse-login={l}"));
        async move {
            let mut rb = http.get(url);
            if let Some(c) = cookie {
                rb = rb.header("cookie", c);
            }
            let resp = rb.send().await.unwrap();
            let cleared = resp.headers().get_all(SET_COOKIE).iter().any(|v| {
                let v = v.to_str().unwrap();
                v.starts_with("__Host-gatehouse-login=;") && v.contains("Max-Age=0")
            });
            let signed_in = resp.headers().get_all(SET_COOKIE).iter().any(|v| v.to_str().unwrap().starts_with(COOKIE));
            (resp.status().as_u16(), cleared, signed_in)
        }
    };
    let state = get("state");
    let iss = url::form_urlencoded::byte_serialize(op.issuer.as_bytes()).collect::<String>();

    // from another browser (no login cookie): nothing to take
    assert_eq!(callback(None, format!("code=x&state={state}&iss={iss}")).await, (401, true, false));
    // a forged state: refused, and the sign-in is used up, so the right state fails after it
    assert_eq!(callback(Some(&login), format!("code=x&state=forged&iss={iss}")).await, (401, true, false));
    assert_eq!(callback(Some(&login), format!("code=x&state={state}&iss={iss}")).await, (401, true, false));
    // an answer naming another issuer (RFC 9207 mix-up defence)
    let (login, q) = start_sso(&mut b).await;
    let state = q.iter().find(|(k, _)| k == "state").unwrap().1.clone();
    let other = "http%3A%2F%2F127.0.0.1%3A9";
    assert_eq!(callback(Some(&login), format!("code=x&state={state}&iss={other}")).await, (401, true, false));
    // the provider's refusal, and a made-up code the provider does not know
    let (login, q) = start_sso(&mut b).await;
    let state = q.iter().find(|(k, _)| k == "state").unwrap().1.clone();
    assert_eq!(
        callback(Some(&login), format!("error=access_denied&state={state}&iss={iss}")).await,
        (401, true, false)
    );
    let (login, q) = start_sso(&mut b).await;
    let state = q.iter().find(|(k, _)| k == "state").unwrap().1.clone();
    assert_eq!(callback(Some(&login), format!("code=made-up&state={state}&iss={iss}")).await, (401, true, false));

    // an issuer that is not configured for the console
    assert_eq!(b.get("/sign-in/oidc/other").await.status, 404);
    let actions = audit_actions(&gw).await;
    let refused = actions.iter().filter(|(a, o, _)| a == "console.sign_in" && o == "denied").count();
    assert_eq!(refused, 6, "{actions:?}");
}

#[tokio::test]
async fn console_issuers_are_checked_at_start() {
    let bad = [
        ("redirect_uri = \"http://127.0.0.1:1/elsewhere\"", "redirect_uri"),
        ("redirect_uri = \"http://console.example.com/sign-in/oidc/callback\"", "redirect_uri"),
        ("client_id = \"\"", "client_id"),
        ("client_secret = \"console-secret\"", "client_secret"),
        ("scopes = [\"email\"]", "scopes"),
        ("post_logout_redirect_uri = \"http://127.0.0.1:1/sign-in\"", "post_logout_redirect_uri"),
        (
            "sign_out_at_provider = true\npost_logout_redirect_uri = \"http://evil.example/sign-in\"",
            "post_logout_redirect_uri",
        ),
    ];
    for (line, field) in bad {
        let key = line.split(" = ").next().unwrap();
        let base = "[[oidc]]\nname = \"corp\"\nissuer = \"http://127.0.0.1:9\"\nplanes = [\"console\"]\n\
                    claims = { org = \"/org\", roles = \"/roles\" }\nadmin_roles = { a = \"viewer\" }\n";
        let defaults = [
            ("client_id", "client_id = \"console\""),
            ("redirect_uri", "redirect_uri = \"http://127.0.0.1:1/sign-in/oidc/callback\""),
        ];
        let mut toml = base.to_owned();
        for (k, l) in defaults {
            if k != key {
                toml.push_str(l);
                toml.push('\n');
            }
        }
        toml.push_str(line);
        let (ok, text) = crate::common::validate(&toml);
        assert!(!ok, "{line}: {text}");
        assert!(text.contains(&format!("oidc[0].{field}")), "{line}: {text}");
        assert!(!text.contains("console-secret"), "a literal secret is never echoed: {text}");
    }
}

#[tokio::test]
async fn the_usage_page_charts_the_ledger_and_downloads_it_as_csv() {
    let gw = gateway().spawn().await;
    let key = gw.api_key.clone().unwrap();
    for _ in 0..3 {
        assert_eq!(gw.chat(&key, "mock").await.status(), 200);
    }
    let (_, orgs) = as_root(&gw, Method::GET, "/admin/v1/orgs", None).await;
    let org = orgs["data"][0]["id"].as_str().unwrap().to_owned();
    crate::budgets::ledger(&gw, &org, "", 3).await;

    let mut b = signed_in(&gw, &root(&gw)).await;
    let page = b.get("/usage").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<strong>3</strong> requests"), "{}", page.body);
    assert!(page.body.contains(r#"<svg class="chart" role="img""#), "a chart, described for screen readers");
    assert!(page.body.contains("<caption>Per model</caption>") && page.body.contains("mock"));

    let csv = b.get(&format!("/usage.csv?org={org}")).await;
    assert_eq!(csv.status, 200);
    assert_eq!(csv.headers["content-type"], "text/csv; charset=utf-8");
    assert!(csv.headers["content-disposition"].to_str().unwrap().starts_with("attachment; filename=\"usage-"));
    let mut lines = csv.body.lines();
    assert!(lines.next().unwrap().starts_with("day,project_id,credential,model,provider,requests"));
    let requests: i64 = lines.map(|l| l.split(',').nth(5).unwrap().parse::<i64>().unwrap()).sum();
    assert_eq!(requests, 3);

    // an org admin of another org sees its own (empty) usage, whatever it asks for
    let acme = new_org(&gw, "acme").await;
    let (_, admin) = mint(&gw, &root(&gw), "org_admin", Some(&acme)).await;
    let mut a = signed_in(&gw, admin["token"].as_str().unwrap()).await;
    let page = a.get(&format!("/usage?org={org}")).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("No usage in this range") && page.body.contains("<strong>acme</strong>"),
        "{}",
        page.body
    );
    let csv = a.get(&format!("/usage.csv?org={org}")).await;
    assert_eq!(csv.body.lines().count(), 1, "only the header: {}", csv.body);
    // a bad date is the API's refusal, explained
    let page = b.get("/usage?from=yesterday").await;
    assert_eq!(page.status, 400);
    assert!(page.body.contains("invalid_request"));
    assert_eq!(b.get("/usage?org=nowhere").await.status, 404);
}

#[tokio::test]
async fn the_audit_trail_exports_from_the_console_as_the_api_exports_it() {
    let gw = gateway().spawn().await;
    let mut b = signed_in(&gw, &root(&gw)).await;
    let page = b.get("/audit?action=console.sign_in").await;
    assert!(page.body.contains(r#"href="/audit/export?action=console.sign_in""#), "{}", page.body);
    let nd = b.get("/audit/export?action=console.sign_in").await;
    assert_eq!(nd.status, 200);
    assert_eq!(nd.headers["content-type"], "application/x-ndjson");
    assert!(nd.headers["content-disposition"].to_str().unwrap().starts_with("attachment;"));
    assert!(nd.body.contains("\"action\":\"console.sign_in\""), "{}", nd.body);
    let csv = b.get("/audit/export?format=csv").await;
    assert_eq!((csv.status, csv.headers["content-type"].to_str().unwrap()), (200, "text/csv; charset=utf-8"));
    // the export is itself audited, and a bad parameter is a page, audited too
    assert_eq!(b.get("/audit/export?format=xml").await.status, 400);
    let actions = audit_actions(&gw).await;
    assert!(actions.iter().any(|(a, o, _)| a == "audit.export" && o == "allowed"));
    assert!(actions.iter().any(|(a, o, _)| a == "audit.export" && o == "denied"));
    // the page pages: 50 events each, "Older events" goes on where it stopped
    for _ in 0..60 {
        assert_eq!(b.get("/keys").await.status, 200);
    }
    let first = b.get("/audit?action=key.list").await;
    assert_eq!(first.body.matches("<code>key.list</code>").count(), 50);
    let next = between(&first.body, r#"<a rel="next" href=""#, "\"").unwrap().replace("&amp;", "&");
    let second = b.get(&next).await;
    assert_eq!(second.status, 200, "{next}: {}", second.body);
    assert_eq!(second.body.matches("<code>key.list</code>").count(), 10, "{}", second.body);
    assert_eq!(b.get("/audit?after=not-a-cursor").await.status, 400);

    // a member may not export
    let acme = new_org(&gw, "acme").await;
    let (_, member) = mint(&gw, &root(&gw), "member", Some(&acme)).await;
    let mut m = signed_in(&gw, member["token"].as_str().unwrap()).await;
    assert_eq!(m.get("/audit/export").await.status, 403);

    // chain integrity: not verified yet, verified on request (the API's service, audited),
    // then shown as the last verification
    let page = b.get("/audit").await;
    assert!(page.body.contains("Not verified on this replica since it started"), "{}", page.body);
    let csrf = page.csrf();
    assert_eq!(b.post_from("/audit/verify", &[("csrf", &csrf)], Some("https://evil.example")).await.status, 403);
    let done = b.post("/audit/verify", &[("csrf", &csrf)]).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("Every chain verified intact"), "{}", done.body);
    assert!(done.body.contains("<code>platform</code>") && done.body.contains(&format!("<code>org/{acme}</code>")));
    let page = b.get("/audit").await;
    assert!(page.body.contains("Last verification on this replica") && page.body.contains("intact"), "{}", page.body);
    assert!(audit_actions(&gw).await.iter().any(|(a, o, _)| a == "audit.verify" && o == "allowed"));
    // an org's admin verifies and sees its own chain only
    let (_, admin) = mint(&gw, &root(&gw), "org_admin", Some(&acme)).await;
    let mut a = signed_in(&gw, admin["token"].as_str().unwrap()).await;
    let csrf = a.get("/audit").await.csrf();
    let own = a.post("/audit/verify", &[("csrf", &csrf)]).await;
    assert_eq!(own.status, 200, "{}", own.body);
    assert!(own.body.contains(&format!("<code>org/{acme}</code>")) && !own.body.contains("<code>platform</code>"));
}

#[tokio::test]
async fn organizations_projects_and_members_are_managed_with_the_apis_rights() {
    let gw = gateway().spawn().await;
    let mut b = signed_in(&gw, &root(&gw)).await;
    let csrf = b.get("/orgs").await.csrf();
    let page = b.post("/orgs", &[("csrf", &csrf), ("name", "initech")]).await;
    assert_eq!(page.status, 303, "{}", page.body);
    let org_page = page.location().to_owned();
    let org = org_page.strip_prefix("/orgs/").unwrap().to_owned();
    assert_eq!(b.post(&format!("{org_page}/projects"), &[("csrf", &csrf), ("name", "web")]).await.status, 303);
    let added = b
        .post(
            &format!("{org_page}/members"),
            &[("csrf", &csrf), ("email", "ann@example.com"), ("name", "Ann"), ("role", "org_admin")],
        )
        .await;
    assert_eq!(added.status, 303, "{}", added.body);
    let page = b.get(&org_page).await;
    assert!(page.body.contains(">web</a></td>") && page.body.contains("ann@example.com"), "{}", page.body);
    // the API's own checks: a name it refuses is a page naming the field
    let bad = b.post(&format!("{org_page}/projects"), &[("csrf", &csrf), ("name", "no spaces")]).await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("<code>name</code>"), "{}", bad.body);

    // an org admin of another org: the list shows its own, this org is not found
    let (_, other) = mint(&gw, &root(&gw), "org_admin", Some(&new_org(&gw, "acme").await)).await;
    let mut a = signed_in(&gw, other["token"].as_str().unwrap()).await;
    let listed = a.get("/orgs").await;
    assert!(listed.body.contains(">acme<") && !listed.body.contains("initech"), "{}", listed.body);
    assert!(!listed.body.contains("Create organization"));
    assert_eq!(a.get(&org_page).await.status, 404);
    let a_csrf = a.get("/orgs").await.csrf();
    let forged = a
        .post(
            &format!("{org_page}/members"),
            &[("csrf", &a_csrf), ("email", "x@example.com"), ("name", "X"), ("role", "viewer")],
        )
        .await;
    assert_eq!(forged.status, 404);

    // a viewer of the org sees it without the forms
    let (_, viewer) = mint(&gw, &root(&gw), "viewer", Some(&org)).await;
    let mut v = signed_in(&gw, viewer["token"].as_str().unwrap()).await;
    let page = v.get(&org_page).await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("Add a member") && !page.body.contains("Create project"), "{}", page.body);

    // removing the member
    let (_, members) = as_root(&gw, Method::GET, &format!("/admin/v1/orgs/{org}/members"), None).await;
    let user = members["data"][0]["user_id"].as_str().unwrap().to_owned();
    let removed = b.post(&format!("{org_page}/members/{user}/remove"), &[("csrf", &csrf)]).await;
    assert_eq!(removed.status, 303, "{}", removed.body);
    let (_, members) = as_root(&gw, Method::GET, &format!("/admin/v1/orgs/{org}/members"), None).await;
    assert_eq!(members["data"].as_array().unwrap().len(), 0);
    let actions = audit_actions(&gw).await;
    for a in ["org.create", "project.create", "member.set", "member.remove"] {
        assert!(actions.iter().any(|(x, o, _)| x == a && o == "allowed"), "{a}: {actions:?}");
    }
}

#[tokio::test]
async fn a_key_rotated_from_the_console_shows_its_new_secret_once_and_the_old_one_stops() {
    let gw = gateway().spawn().await;
    let old = gw.api_key.clone().unwrap();
    let mut b = signed_in(&gw, &root(&gw)).await;
    let list = b.get("/keys").await;
    let csrf = list.csrf();
    let id = between(&list.body, r#"action="/keys/"#, "/rotate").unwrap().to_owned();
    let page = b.post(&format!("/keys/{id}/rotate"), &[("csrf", &csrf), ("org", ""), ("grace_seconds", "0")]).await;
    assert_eq!(page.status, 201, "{}", page.body);
    let new = between(&page.body, r#"id="secret">"#, "<").unwrap().to_owned();
    assert!(new.starts_with("gth_") && new != old);
    assert!(page.body.contains("stopped working now"));
    let models = |key: String| {
        let (http, url) = (gw.http.clone(), format!("{}/v1/models", gw.data_url));
        async move { http.get(url).bearer_auth(key).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(models(new).await, 200);
    let stopped = gatehouse_testkit::eventually(Duration::from_secs(2), || {
        let m = models(old.clone());
        async move { m.await == 401 }
    });
    assert!(stopped.await, "the old secret stops within a second");
    // a grace the API refuses is its refusal, explained
    let list = b.get("/keys").await;
    let id = between(&list.body, r#"action="/keys/"#, "/rotate").unwrap().to_owned();
    let page =
        b.post(&format!("/keys/{id}/rotate"), &[("csrf", &csrf), ("org", ""), ("grace_seconds", "999999")]).await;
    assert_eq!(page.status, 400);
    assert!(page.body.contains("<code>grace_seconds</code>"));
}

#[tokio::test]
async fn an_organizations_page_shows_its_budgets_standing() {
    let gw = gateway().config("[prices.mock]\ninput_per_mtok = 2.5\noutput_per_mtok = 10").spawn().await;
    let acme = new_org(&gw, "acme").await;
    let spec = json!({"rpm": 600, "budgets": [{"period": "monthly", "usd": 50, "alert_at": [80]}]});
    let (st, v) = as_root(&gw, Method::PUT, &format!("/admin/v1/orgs/{acme}/limits"), Some(spec)).await;
    assert_eq!(st, 200, "{v}");
    let mut b = signed_in(&gw, &root(&gw)).await;
    let page = b.get(&format!("/orgs/{acme}")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Requests per minute: 600"), "{}", page.body);
    assert!(page.body.contains("<td>monthly</td><td>$50.00</td><td>$0.00</td>"), "{}", page.body);
    assert!(page.body.contains(r#"<meter min="0" max="100" value="0">"#));
    // an org without limits of its own says so
    let (_, orgs) = as_root(&gw, Method::GET, "/admin/v1/orgs", None).await;
    let default = orgs["data"].as_array().unwrap().iter().find(|o| o["name"] == "default").unwrap()["id"].clone();
    let page = b.get(&format!("/orgs/{}", default.as_str().unwrap())).await;
    assert!(page.body.contains("None of its own"), "{}", page.body);
}

// ---- passkeys, with a software authenticator (Chromium's virtual one is in the browser suite) ----

const ORIGIN: &str = "https://gate.example";
const RP_ID: &str = "gate.example";

fn challenge(options: &Value) -> Vec<u8> {
    use base64::Engine;
    let c = options["publicKey"]["challenge"].as_str().unwrap();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c).unwrap()
}

/// Registers a new passkey for the signed-in browser; gives it and the account's user handle.
async fn register_passkey(b: &mut Browser) -> (Authenticator, Vec<u8>) {
    use base64::Engine;
    let csrf = b.get("/account").await.csrf();
    let (st, options) = b.post_json("/account/passkeys/options", &json!({"csrf": csrf})).await;
    assert_eq!(st, 200, "{options}");
    assert_eq!(options["publicKey"]["authenticatorSelection"]["userVerification"], "required");
    assert_eq!(options["publicKey"]["attestation"], "none");
    let handle = options["publicKey"]["user"]["id"].as_str().unwrap();
    let handle = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(handle).unwrap();
    let auth = Authenticator::p256();
    let credential = auth.registration_json(&challenge(&options), ORIGIN, RP_ID);
    let body = json!({"csrf": csrf, "name": "test key", "credential": credential});
    let (st, v) = b.post_json("/account/passkeys", &body).await;
    assert_eq!(st, 200, "{v}");
    // the same answer again: its challenge was taken
    assert_eq!(b.post_json("/account/passkeys", &body).await.0, 400);
    (auth, handle)
}

/// A passkey sign-in in a fresh browser: the status and the browser.
async fn passkey_sign_in(gw: &TestGateway, auth: &mut Authenticator, handle: &[u8]) -> (u16, Value, Browser) {
    let mut b = Browser::new(gw);
    let (st, options) = b.post_json("/sign-in/passkey/options", &json!({})).await;
    assert_eq!(st, 200, "{options}");
    assert_eq!(options["publicKey"]["allowCredentials"], json!([]), "discoverable: no names asked or given");
    let credential = auth.assertion_json(&challenge(&options), ORIGIN, RP_ID, handle);
    let (st, v) = b.post_json("/sign-in/passkey", &json!({"credential": credential, "next": "/keys"})).await;
    (st, v, b)
}

#[tokio::test]
async fn a_passkey_signs_in_once_per_challenge_and_stops_with_its_token() {
    let gw = gateway().config(&format!("[console]\norigin = \"{ORIGIN}\"")).spawn().await;
    let acme = new_org(&gw, "acme").await;
    let (_, admin) = mint(&gw, &root(&gw), "org_admin", Some(&acme)).await;
    let mut b = signed_in(&gw, admin["token"].as_str().unwrap()).await;
    let (mut auth, handle) = register_passkey(&mut b).await;
    assert!(b.get("/account").await.body.contains("test key"));

    let (st, v, mut signed) = passkey_sign_in(&gw, &mut auth, &handle).await;
    assert_eq!((st, v["next"].as_str()), (200, Some("/keys")), "{v}");
    let page = signed.get("/keys").await;
    assert_eq!(page.status, 200, "signed in as the token's org admin");
    assert!(page.body.contains("org_admin"));

    // one challenge, one sign-in: the same answer sent again finds nothing
    let mut replay = Browser::new(&gw);
    let (_, options) = replay.post_json("/sign-in/passkey/options", &json!({})).await;
    let credential = auth.assertion_json(&challenge(&options), ORIGIN, RP_ID, &handle);
    let body = json!({"credential": credential});
    assert_eq!(replay.post_json("/sign-in/passkey", &body).await.0, 200);
    let (st, v) = Browser::new(&gw).post_json("/sign-in/passkey", &body).await;
    assert_eq!((st, v["error"]["code"].as_str()), (401, Some("invalid_token")), "{v}");
    // a page of another site cannot run the ceremony
    let evil = Browser::new(&gw)
        .http
        .post(format!("{}/sign-in/passkey/options", gw.admin_url))
        .header("origin", "https://evil.example")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(evil.status().as_u16(), 403);
    // a wrong user handle or another origin is refused
    let (_, options) = replay.post_json("/sign-in/passkey/options", &json!({})).await;
    let credential = auth.assertion_json(&challenge(&options), ORIGIN, RP_ID, b"someone else");
    assert_eq!(replay.post_json("/sign-in/passkey", &json!({"credential": credential})).await.0, 401);
    let (_, options) = replay.post_json("/sign-in/passkey/options", &json!({})).await;
    let credential = auth.assertion_json(&challenge(&options), "https://evil.example", RP_ID, &handle);
    assert_eq!(replay.post_json("/sign-in/passkey", &json!({"credential": credential})).await.0, 401);

    // a signed-in operator confirms with their passkey (re-authentication)
    let csrf = signed.get("/account").await.csrf();
    let (_, options) = signed.post_json("/confirm/options", &json!({"csrf": csrf})).await;
    let credential = auth.assertion_json(&challenge(&options), ORIGIN, RP_ID, &handle);
    let (st, v) = signed.post_json("/confirm", &json!({"csrf": csrf, "credential": credential, "next": "/keys"})).await;
    assert_eq!((st, v["next"].as_str()), (200, Some("/keys")), "{v}");

    // the passkey stands for the admin token: revoked, its sessions end and it signs in no more
    let revoke = format!("/admin/v1/tokens/{}/revoke", admin["id"].as_str().unwrap());
    assert_eq!(as_root(&gw, Method::POST, &revoke, None).await.0, 200);
    assert_eq!(signed.get("/keys").await.status, 303);
    let (st, _, _) = passkey_sign_in(&gw, &mut auth, &handle).await;
    assert_eq!(st, 401);
    let actions = audit_actions(&gw).await;
    assert!(actions.iter().any(|(a, o, _)| a == "passkey.register" && o == "allowed"), "{actions:?}");
    assert!(actions.iter().any(|(a, o, _)| a == "console.confirm" && o == "allowed"));
    assert!(actions.iter().any(|(a, o, c)| a == "console.sign_in" && o == "denied" && c == "invalid_token"));
}

#[tokio::test]
async fn failed_passkey_proofs_lock_the_account_out_and_stale_sessions_confirm_first() {
    let config = format!(
        "[console]\norigin = \"{ORIGIN}\"\nsign_in_failures_per_account = 2\nsign_in_failures_per_source = 100\n\
         reauth_window_ms = 1000"
    );
    let gw = gateway().config(&config).spawn().await;
    let mut b = signed_in(&gw, &root(&gw)).await;
    let (mut auth, handle) = register_passkey(&mut b).await;

    // a different key claiming the same credential id fails, twice: the account is locked out,
    // and then even the real passkey waits (from any source)
    let mut forger = Authenticator::p256();
    forger.id = auth.id.clone();
    for _ in 0..2 {
        assert_eq!(passkey_sign_in(&gw, &mut forger, &handle).await.0, 401);
    }
    let (st, v, _) = passkey_sign_in(&gw, &mut auth, &handle).await;
    assert_eq!((st, v["error"]["code"].as_str()), (429, Some("rate_limit_exceeded")), "{v}");
    let actions = audit_actions(&gw).await;
    assert!(actions.iter().any(|(a, o, _)| a == "console.lockout" && o == "denied"), "{actions:?}");

    // once the confirmation window has passed, sensitive actions ask for a proof first
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let export = b.get("/audit/export?format=csv").await;
    assert_eq!((export.status, export.location()), (303, "/confirm?next=%2Faudit%2Fexport%3Fformat%3Dcsv"));
    let keys = b.get("/keys").await;
    let id = between(&keys.body, r#"action="/keys/"#, "/rotate").unwrap().to_owned();
    let csrf = keys.csrf();
    let rotate = b.post(&format!("/keys/{id}/rotate"), &[("csrf", &csrf), ("org", ""), ("grace_seconds", "0")]).await;
    assert_eq!(rotate.location(), "/confirm?next=%2Fkeys", "not rotated while stale");
    let (st, _) = b.post_json("/account/passkeys/options", &json!({"csrf": csrf})).await;
    assert_eq!(st, 403, "no new passkeys on a stale session");
    let page = b.get("/confirm?next=/keys").await;
    assert_eq!(page.status, 403);
    assert!(page.body.contains("data-passkey=\"confirm\""), "{}", page.body);

    // a confirmation is bound to its session and the session's own account's passkeys
    let (st, options) = b.post_json("/confirm/options", &json!({"csrf": csrf})).await;
    assert_eq!(st, 200, "{options}");
    assert_eq!(options["publicKey"]["allowCredentials"].as_array().unwrap().len(), 1);
    let credential = auth.assertion_json(&challenge(&options), ORIGIN, RP_ID, &handle);
    let (_, second) = mint(&gw, &root(&gw), "platform_admin", None).await;
    let mut other = signed_in(&gw, second["token"].as_str().unwrap()).await;
    let other_csrf = other.get("/account").await.csrf();
    let stolen = json!({"csrf": other_csrf, "credential": credential});
    assert_eq!(other.post_json("/confirm", &stolen).await.0, 401, "another session's challenge");
    assert_eq!(b.get("/audit/export?format=csv").await.status, 303, "still unconfirmed");
}

#[tokio::test]
async fn the_recovery_command_mints_a_platform_admin_token_beside_the_store() {
    let gw = gateway().spawn().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["recover-admin", "--name", "lost-everything", "--config"])
        .arg(&gw.config_path)
        .env_clear()
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let token = stdout.lines().map(str::trim).find(|l| l.starts_with("gth")).unwrap().to_owned();
    // the running gateway takes it at once: a console session as a platform admin
    let mut b = signed_in(&gw, &token).await;
    assert!(b.get("/").await.body.contains("platform_admin"));
    let (_, tokens) = as_root(&gw, Method::GET, "/admin/v1/tokens", None).await;
    assert!(tokens.to_string().contains("lost-everything"), "{tokens}");

    // no store where the config points: nothing is created, and it says why
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["recover-admin", "--data-dir"])
        .arg(dir.path())
        .env_clear()
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no store at"));
    assert!(!dir.path().join("gatehouse.db").exists());
}

#[tokio::test]
async fn admin_tokens_are_minted_when_freshly_proved_and_capabilities_revoke_from_the_console() {
    let gw = gateway().config("[console]\nreauth_window_ms = 1000").spawn().await;
    let mut b = signed_in(&gw, &root(&gw)).await;
    let page = b.get("/tokens").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("bootstrap") && page.body.contains(r#"href="/tokens""#), "{}", page.body);
    let csrf = page.csrf();
    let ops = new_org(&gw, "ops").await;
    let made = b.post("/tokens", &[("csrf", &csrf), ("name", "ops-viewer"), ("role", "viewer"), ("org", &ops)]).await;
    assert_eq!(made.status, 201, "{}", made.body);
    let secret = between(&made.body, r#"id="secret">"#, "<").unwrap().to_owned();
    assert!(secret.starts_with("gtha_"));
    assert_eq!(call(&gw, &secret, Method::GET, "/admin/v1/orgs", None).await.0, 200, "the token works at once");
    // the API's rules hold: nobody mints above their own role
    let (_, admin) = mint(&gw, &root(&gw), "org_admin", Some(&new_org(&gw, "acme").await)).await;
    let mut a = signed_in(&gw, admin["token"].as_str().unwrap()).await;
    let acsrf = a.get("/tokens").await.csrf();
    let over = a.post("/tokens", &[("csrf", &acsrf), ("name", "up"), ("role", "platform_admin")]).await;
    assert_eq!(over.status, 403, "{}", over.body);
    // revoked from the console: it stops
    let list = b.get("/tokens").await;
    let row = &list.body[list.body.find("ops-viewer").unwrap()..];
    let id = between(row, r#"action="/tokens/"#, "/revoke").unwrap().to_owned();
    assert_eq!(b.post(&format!("/tokens/{id}/revoke"), &[("csrf", &csrf)]).await.status, 303);
    assert_eq!(call(&gw, &secret, Method::GET, "/admin/v1/orgs", None).await.0, 401);
    // a member has no token page
    let (_, member) = mint(&gw, &root(&gw), "member", Some(&new_org(&gw, "beta").await)).await;
    let mut m = signed_in(&gw, member["token"].as_str().unwrap()).await;
    assert!(!m.get("/").await.body.contains(r#"href="/tokens""#));
    assert_eq!(m.get("/tokens").await.status, 403);

    // capability tokens: listed with their caveats, revoked with their delegations
    let body = json!({"name": "ci-agent", "scopes": ["chat:*"], "expires_in_seconds": 600});
    let (st, cap) = as_root(&gw, Method::POST, "/admin/v1/capabilities", Some(body)).await;
    assert_eq!(st, 201, "{cap}");
    let page = b.get("/capabilities").await;
    assert!(page.body.contains("ci-agent") && page.body.contains("chat:*"), "{}", page.body);
    let cap_id = cap["id"].as_str().unwrap();
    let revoked = b.post(&format!("/capabilities/{cap_id}/revoke"), &[("csrf", &csrf), ("org", "")]).await;
    assert_eq!(revoked.status, 303, "{}", revoked.body);
    let (_, listed) = as_root(&gw, Method::GET, "/admin/v1/capabilities", None).await;
    assert!(!listed["data"][0]["revoked_at"].is_null(), "{listed}");

    // minting an admin token is sensitive: a stale session confirms first
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stale = b.post("/tokens", &[("csrf", &csrf), ("name", "late"), ("role", "viewer")]).await;
    assert_eq!((stale.status, stale.location()), (303, "/confirm?next=%2Ftokens"));
    let actions = audit_actions(&gw).await;
    assert!(actions.iter().any(|(a, o, _)| a == "token.create" && o == "allowed"));
    assert!(actions.iter().any(|(a, o, _)| a == "capability.revoke" && o == "allowed"));
}

#[tokio::test]
async fn provider_credentials_and_webhooks_are_managed_from_the_console_and_secrets_never_shown_back() {
    let fake = gatehouse_testkit::FakeProvider::spawn().await;
    let config = format!(
        "{}\n[webhooks]\nallow_private_targets = [\"127.0.0.1/32\"]\nretry_base_ms = 50\nmax_attempts = 2\n",
        crate::common::upstream_config(&fake)
    );
    let gw = gateway().config(&config).env("FAKE_UPSTREAM_KEY", crate::common::PROVIDER_SECRET).spawn().await;
    let acme = new_org(&gw, "acme").await;
    let mut b = signed_in(&gw, &root(&gw)).await;
    let page = b.get("/providers").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("fake-model") && page.body.contains("closed"), "deployments and breakers");
    let csrf = page.csrf();

    // a credential goes in and never comes back out: only its hint is shown
    const CANARY: &str = "sk-console-canary-0123456789abcdef";
    let form = [("csrf", csrf.as_str()), ("org", &acme), ("provider", "fake"), ("project", ""), ("secret", CANARY)];
    let stored = b.post("/providers/credentials", &form).await;
    assert_eq!((stored.status, stored.location()), (303, format!("/providers?org={acme}").as_str()), "{}", stored.body);
    let page = b.get(&format!("/providers?org={acme}")).await;
    assert!(page.body.contains("sha256:") && !page.body.contains(CANARY), "{}", page.body);
    let id = between(&page.body, r#"action="/providers/credentials/"#, "/delete").unwrap().to_owned();
    let deleted = b.post(&format!("/providers/credentials/{id}/delete"), &[("csrf", &csrf), ("org", &acme)]).await;
    assert_eq!(deleted.status, 303);
    assert!(!b.get(&format!("/providers?org={acme}")).await.body.contains("sha256:"));

    // a generic webhook's signing secret is shown once; its deliveries are on its own page
    let form = [
        ("csrf", csrf.as_str()),
        ("org", &acme),
        ("name", "siem"),
        ("kind", "generic"),
        ("url", "http://127.0.0.1:9/hook"),
        ("events", "project.*"),
    ];
    let made = b.post("/webhooks", &form).await;
    assert_eq!(made.status, 201, "{}", made.body);
    let secret = between(&made.body, r#"id="secret">"#, "<").unwrap().to_owned();
    let list = b.get(&format!("/webhooks?org={acme}")).await;
    assert!(list.body.contains("siem") && !list.body.contains(&secret), "{}", list.body);
    let hook = between(&list.body, r#"action="/webhooks/"#, "/delete").unwrap().to_owned();
    let project = json!({"name": "web"});
    assert_eq!(as_root(&gw, Method::POST, &format!("/admin/v1/orgs/{acme}/projects"), Some(project)).await.0, 201);
    let delivered = gatehouse_testkit::eventually(Duration::from_secs(5), || {
        let mut b = Browser { http: b.http.clone(), base: b.base.clone(), cookie: b.cookie.clone() };
        let path = format!("/webhooks/{hook}?org={acme}");
        async move { b.get(&path).await.body.contains("project.create") }
    });
    assert!(delivered.await, "the project event was queued for the webhook");
    assert_eq!(b.post(&format!("/webhooks/{hook}/delete"), &[("csrf", &csrf), ("org", &acme)]).await.status, 303);
    assert!(!b.get(&format!("/webhooks?org={acme}")).await.body.contains("siem"));

    // a viewer sees neither page in the navigation, and the API's refusals hold
    let (_, viewer) = mint(&gw, &root(&gw), "viewer", Some(&acme)).await;
    let mut v = signed_in(&gw, viewer["token"].as_str().unwrap()).await;
    assert!(!v.get("/").await.body.contains(r#"href="/providers""#));
    assert_eq!(v.get("/providers").await.status, 403);
    let actions = audit_actions(&gw).await;
    for action in ["credential.create", "credential.delete", "webhook.create", "webhook.delete"] {
        assert!(actions.iter().any(|(a, o, _)| a == action && o == "allowed"), "{action}: {actions:?}");
    }
}

#[tokio::test]
async fn a_projects_settings_and_state_are_managed_from_its_page() {
    let gw = gateway().spawn().await;
    let acme = new_org(&gw, "acme").await;
    let (st, pr) =
        as_root(&gw, Method::POST, &format!("/admin/v1/orgs/{acme}/projects"), Some(json!({"name": "web"}))).await;
    assert_eq!(st, 201, "{pr}");
    let id = pr["id"].as_str().unwrap();
    let (_, admin) = mint(&gw, &root(&gw), "org_admin", Some(&acme)).await;
    let mut b = signed_in(&gw, admin["token"].as_str().unwrap()).await;
    let org_page = b.get(&format!("/orgs/{acme}")).await;
    let here = format!("/orgs/{acme}/projects/{id}");
    assert!(org_page.body.contains(&format!(r#"href="{here}""#)), "{}", org_page.body);
    let page = b.get(&here).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.csrf();
    let form = [
        ("csrf", csrf.as_str()),
        ("name", "web"),
        ("models", "mock"),
        ("rpm", "60"),
        ("tpm", ""),
        ("cors_origins", "https://app.example\r\nHTTPS://Other.Example:443"),
    ];
    let saved = b.post(&here, &form).await;
    assert_eq!((saved.status, saved.location()), (303, here.as_str()), "{}", saved.body);
    let (_, v) = as_root(&gw, Method::GET, &format!("/admin/v1/orgs/{acme}/projects/{id}"), None).await;
    assert_eq!(v["models"], json!(["mock"]));
    assert_eq!(v["default_limits"], json!({"rpm": 60}));
    assert_eq!(v["cors_origins"], json!(["https://app.example", "https://other.example"]));
    let page = b.get(&here).await;
    assert!(page.body.contains("https://app.example\nhttps://other.example"), "{}", page.body);
    // the API's validation, explained on the page
    let bad =
        [("csrf", csrf.as_str()), ("name", "web"), ("models", ""), ("rpm", ""), ("tpm", ""), ("cors_origins", "*")];
    let refused = b.post(&here, &bad).await;
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("<code>cors_origins</code>"), "{}", refused.body);
    // disable and enable
    assert_eq!(b.post(&format!("{here}/disable"), &[("csrf", &csrf)]).await.status, 303);
    assert!(b.get(&here).await.body.contains("disabled: its keys and tokens do not work"));
    assert_eq!(b.post(&format!("{here}/enable"), &[("csrf", &csrf)]).await.status, 303);
    assert_eq!(b.post(&format!("{here}/explode"), &[("csrf", &csrf)]).await.status, 404);
    // a viewer reads the settings and gets no form; another org's project is not found
    let (_, viewer) = mint(&gw, &root(&gw), "viewer", Some(&acme)).await;
    let mut v = signed_in(&gw, viewer["token"].as_str().unwrap()).await;
    let page = v.get(&here).await;
    assert!(page.status == 200 && !page.body.contains("Save settings"), "{}", page.body);
    let beta = new_org(&gw, "beta").await;
    let (_, other) = mint(&gw, &root(&gw), "org_admin", Some(&beta)).await;
    let mut o = signed_in(&gw, other["token"].as_str().unwrap()).await;
    assert_eq!(o.get(&here).await.status, 404);
}

#[tokio::test]
async fn guardrail_policies_are_read_and_set_per_org_and_project() {
    let gw = gateway().spawn().await;
    let acme = new_org(&gw, "acme").await;
    let (_, pr) =
        as_root(&gw, Method::POST, &format!("/admin/v1/orgs/{acme}/projects"), Some(json!({"name": "web"}))).await;
    let id = pr["id"].as_str().unwrap();
    let (_, admin) = mint(&gw, &root(&gw), "org_admin", Some(&acme)).await;
    let mut b = signed_in(&gw, admin["token"].as_str().unwrap()).await;
    let org_page = format!("/orgs/{acme}/guardrails");
    let page = b.get(&org_page).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("In effect") && page.body.contains("prompt_injection"), "{}", page.body);
    let csrf = page.csrf();
    let policy = r#"{"detectors": {"pii": {"input": "block", "output": "redact"}}}"#;
    let saved = b.post(&org_page, &[("csrf", &csrf), ("policy", policy)]).await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let (_, v) = as_root(&gw, Method::GET, &format!("/admin/v1/orgs/{acme}/guardrails"), None).await;
    assert_eq!(v["policy"]["detectors"]["pii"]["input"], "block", "{v}");
    // a policy the API cannot compile, or that is not JSON, is refused with its reason
    let bad = b.post(&org_page, &[("csrf", &csrf), ("policy", r#"{"detectors": {"nope": "x"}}"#)]).await;
    assert_eq!(bad.status, 400);
    let not_json = b.post(&org_page, &[("csrf", &csrf), ("policy", "{")]).await;
    assert_eq!(not_json.status, 400);
    assert!(not_json.body.contains("<code>policy</code>"), "{}", not_json.body);
    // the project's page layers over the org's; empty goes back to the layers above
    let project_page = format!("/orgs/{acme}/projects/{id}/guardrails");
    let page = b.get(&project_page).await;
    assert!(page.body.contains("&quot;block&quot;") || page.body.contains("\"block\""), "{}", page.body);
    let reset = b.post(&org_page, &[("csrf", &csrf), ("policy", "")]).await;
    assert_eq!(reset.status, 303);
    let (_, v) = as_root(&gw, Method::GET, &format!("/admin/v1/orgs/{acme}/guardrails"), None).await;
    assert!(v["policy"].is_null(), "{v}");
    // a viewer reads, and gets no form
    let (_, viewer) = mint(&gw, &root(&gw), "viewer", Some(&acme)).await;
    let mut v = signed_in(&gw, viewer["token"].as_str().unwrap()).await;
    let page = v.get(&org_page).await;
    assert!(page.status == 200 && !page.body.contains("Save policy"), "{}", page.body);
    let actions = audit_actions(&gw).await;
    assert!(actions.iter().any(|(a, o, _)| a == "guardrail.org_policy_set" && o == "allowed"));
    assert!(actions.iter().any(|(a, o, _)| a == "guardrail.org_policy_delete" && o == "allowed"));
}

#[tokio::test]
async fn limits_and_budgets_are_set_per_org_and_project_and_their_standing_shown() {
    let gw = gateway().spawn().await;
    let acme = new_org(&gw, "acme").await;
    let (_, pr) =
        as_root(&gw, Method::POST, &format!("/admin/v1/orgs/{acme}/projects"), Some(json!({"name": "web"}))).await;
    let id = pr["id"].as_str().unwrap().to_owned();
    let (_, admin) = mint(&gw, &root(&gw), "org_admin", Some(&acme)).await;
    let mut b = signed_in(&gw, admin["token"].as_str().unwrap()).await;
    let org_page = format!("/orgs/{acme}/limits");
    let page = b.get(&org_page).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("None of its own"), "{}", page.body);
    assert!(b.get(&format!("/orgs/{acme}")).await.body.contains(&format!(r#"href="/orgs/{acme}/limits""#)));
    let csrf = page.csrf();
    let policy = r#"{"rpm": 600, "budgets": [{"period": "monthly", "usd": 250, "alert_at": [80]}]}"#;
    let saved = b.post(&org_page, &[("csrf", &csrf), ("policy", policy)]).await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let (_, v) = as_root(&gw, Method::GET, &format!("/admin/v1/orgs/{acme}/limits"), None).await;
    assert_eq!(v["limits"]["rpm"], 600, "{v}");
    // the page shows the rates and the budget's standing with its meter
    let page = b.get(&org_page).await;
    assert!(page.body.contains("Requests per minute: 600") && page.body.contains("$250.00"), "{}", page.body);
    assert!(page.body.contains("<meter"), "{}", page.body);
    // a policy the limits service refuses is refused with the field
    let bad = b.post(&org_page, &[("csrf", &csrf), ("policy", r#"{"rpm": 0}"#)]).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("<code>rpm</code>"), "{}", bad.body);
    // a project's own layer; empty clears it
    let project_page = format!("/orgs/{acme}/projects/{id}/limits");
    assert!(b.get(&format!("/orgs/{acme}/projects/{id}")).await.body.contains(&format!(r#"href="{project_page}""#)));
    let saved = b.post(&project_page, &[("csrf", &csrf), ("policy", r#"{"tpm": 50000}"#)]).await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    let (_, v) = as_root(&gw, Method::GET, &format!("/admin/v1/orgs/{acme}/projects/{id}/limits"), None).await;
    assert_eq!(v["limits"]["tpm"], 50000, "{v}");
    assert_eq!(b.post(&project_page, &[("csrf", &csrf), ("policy", " ")]).await.status, 303);
    let (_, v) = as_root(&gw, Method::GET, &format!("/admin/v1/orgs/{acme}/projects/{id}/limits"), None).await;
    assert!(v["limits"].is_null(), "{v}");
    // a viewer reads and gets no form; another org's admin finds nothing
    let (_, viewer) = mint(&gw, &root(&gw), "viewer", Some(&acme)).await;
    let mut v = signed_in(&gw, viewer["token"].as_str().unwrap()).await;
    let page = v.get(&org_page).await;
    assert!(page.status == 200 && !page.body.contains("Save policy"), "{}", page.body);
    assert_eq!(v.post(&org_page, &[("csrf", &page.csrf()), ("policy", policy)]).await.status, 403);
    let beta = new_org(&gw, "beta").await;
    let (_, other) = mint(&gw, &root(&gw), "org_admin", Some(&beta)).await;
    let mut o = signed_in(&gw, other["token"].as_str().unwrap()).await;
    assert_eq!(o.get(&org_page).await.status, 404);
    let actions = audit_actions(&gw).await;
    for action in ["limit.org_policy_set", "limit.project_policy_set", "limit.project_policy_delete"] {
        assert!(actions.iter().any(|(a, o, _)| a == action && o == "allowed"), "{action}");
    }
}
