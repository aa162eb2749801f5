//! Audit webhooks against a local receiver: signed generic deliveries that carry the exact
//! chain line, Slack and Discord formats, retries with backoff and the delivery log,
//! redirects not followed, and SSRF checks before and after DNS.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use gatehouse_testkit::{TestGateway, eventually};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::common::{as_root, call, gateway, mint, new_org, root};

#[derive(Default)]
pub struct Seen {
    pub hits: Mutex<Vec<(String, HeaderMap, String)>>,
    /// Answer 500 to this many requests on `/flaky` first.
    flaky_failures: AtomicUsize,
    elsewhere: AtomicUsize,
}

pub async fn receiver() -> (String, Arc<Seen>) {
    async fn hit(path: &'static str, s: &Seen, h: HeaderMap, body: String) {
        s.hits.lock().await.push((path.to_owned(), h, body));
    }
    let seen = Arc::new(Seen::default());
    let app = Router::new()
        .route(
            "/generic",
            post(|State(s): State<Arc<Seen>>, h: HeaderMap, b: String| async move { hit("/generic", &s, h, b).await }),
        )
        .route(
            "/chat",
            post(|State(s): State<Arc<Seen>>, h: HeaderMap, b: String| async move { hit("/chat", &s, h, b).await }),
        )
        .route(
            "/flaky",
            post(|State(s): State<Arc<Seen>>, h: HeaderMap, b: String| async move {
                hit("/flaky", &s, h, b).await;
                let left = s.flaky_failures.load(Ordering::SeqCst);
                if left > 0 {
                    s.flaky_failures.store(left - 1, Ordering::SeqCst);
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                StatusCode::NO_CONTENT
            }),
        )
        .route("/redirect", post(|| async { (StatusCode::FOUND, [("location", "/elsewhere")]) }))
        .route(
            "/elsewhere",
            post(|State(s): State<Arc<Seen>>| async move {
                s.elsewhere.fetch_add(1, Ordering::SeqCst);
            }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

const ALLOW_LOCAL: &str =
    "[webhooks]\nallow_private_targets = [\"127.0.0.1/32\"]\nretry_base_ms = 50\nmax_attempts = 3\n";

async fn subscribe(gw: &TestGateway, token: &str, body: Value) -> (u16, Value) {
    call(gw, token, Method::POST, "/admin/v1/webhooks", Some(body)).await
}

async fn deliveries(gw: &TestGateway, token: &str, org: &str, id: &str) -> Vec<Value> {
    let (st, v) = call(gw, token, Method::GET, &format!("/admin/v1/webhooks/{id}/deliveries?org={org}"), None).await;
    assert_eq!(st, 200, "{v}");
    v["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn signed_deliveries_carry_the_chain_line_and_retry() {
    let (url, seen) = receiver().await;
    let gw = gateway().config(ALLOW_LOCAL).spawn().await;
    let acme = new_org(&gw, "acme").await;
    let (_, t) = mint(&gw, &root(&gw), "org_admin", Some(&acme)).await;
    let admin = t["token"].as_str().unwrap().to_owned();

    let (st, generic) = subscribe(
        &gw,
        &admin,
        json!({"name": "siem", "kind": "generic", "url": format!("{url}/generic"), "events": ["key.*"]}),
    )
    .await;
    assert_eq!(st, 201, "{generic}");
    let secret = generic["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let (st, slack) = subscribe(
        &gw,
        &admin,
        json!({"name": "ops", "kind": "slack", "url": format!("{url}/chat"), "events": ["*"], "outcomes": ["denied"]}),
    )
    .await;
    assert_eq!(st, 201);
    assert!(slack.get("secret").is_none(), "chat webhooks are not signed");
    seen.flaky_failures.store(2, Ordering::SeqCst);
    let (_, flaky) = subscribe(
        &gw,
        &admin,
        json!({"name": "flaky", "kind": "discord", "url": format!("{url}/flaky"), "events": ["key.create"],
               "outcomes": ["allowed"]}),
    )
    .await;
    let (_, redirect) = subscribe(
        &gw,
        &admin,
        json!({"name": "moved", "kind": "generic", "url": format!("{url}/redirect"), "events": ["key.create"]}),
    )
    .await;
    // the listing never shows a secret
    let (_, list) = call(&gw, &admin, Method::GET, "/admin/v1/webhooks", None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 4);
    assert!(!list.to_string().contains(&secret));

    // one allowed key event, one denied event in the org
    let (st, key) =
        call(&gw, &admin, Method::POST, "/admin/v1/keys", Some(json!({"name": "k", "project": "nope"}))).await;
    assert_eq!(st, 404, "{key}");
    call(&gw, &admin, Method::POST, &format!("/admin/v1/orgs/{acme}/projects"), Some(json!({"name": "web"}))).await;
    let (st, key) =
        call(&gw, &admin, Method::POST, "/admin/v1/keys", Some(json!({"name": "k", "project": "web"}))).await;
    assert_eq!(st, 201);

    let done = eventually(Duration::from_secs(30), || async {
        let hits = seen.hits.lock().await;
        hits.iter().filter(|h| h.0 == "/generic").count() >= 2
            && hits.iter().any(|h| h.0 == "/chat")
            && hits.iter().filter(|h| h.0 == "/flaky").count() >= 3
    })
    .await;
    assert!(done, "deliveries arrived");
    let hits = seen.hits.lock().await.clone();

    // generic: Standard Webhooks headers, a signature that verifies, the chain line verbatim
    let (_, h, body) = hits
        .iter()
        .find(|h| {
            h.0 == "/generic" && h.2.contains("\"type\":\"key.create\"") && h.2.contains("\"outcome\":\"allowed\"")
        })
        .unwrap();
    let id = h["webhook-id"].to_str().unwrap();
    let ts: i64 = h["webhook-timestamp"].to_str().unwrap().parse().unwrap();
    let expected =
        gatehouse_audit::webhooks::sign::signature(&SecretString::from(secret.clone()), id, ts, body).unwrap();
    assert_eq!(h["webhook-signature"].to_str().unwrap(), expected);
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["data"]["target"], key["id"]);
    let (_, trail) = call(&gw, &admin, Method::GET, "/admin/v1/audit?action=key.create", None).await;
    let stored = &trail["data"][0];
    assert_eq!(v["data"]["seq"], stored["seq"]);
    assert_eq!(v["data"]["chain"], format!("org/{acme}"));
    let line = body.split_once("\"data\":").unwrap().1.strip_suffix('}').unwrap();
    assert_eq!(
        hex(&gatehouse_security::chain::link(&prev_hash(&gw, &admin, &acme, stored).await, line.as_bytes())),
        stored["hash"].as_str().unwrap(),
        "the payload's data is the chained line byte for byte"
    );
    // only key.* events reached the generic webhook
    assert!(hits.iter().filter(|h| h.0 == "/generic").all(|h| h.2.contains("\"type\":\"key.")));

    // the delivery log pages: one a page, each going on from the last, the same rows as whole
    let generic_id = generic["id"].as_str().unwrap();
    let whole: Vec<Value> = deliveries(&gw, &admin, &acme, generic_id).await.iter().map(|d| d["id"].clone()).collect();
    assert!(whole.len() >= 2, "{whole:?}");
    let (mut paged, mut before) = (Vec::new(), String::new());
    loop {
        let path = format!("/admin/v1/webhooks/{generic_id}/deliveries?org={acme}&limit=1{before}");
        let (st, v) = call(&gw, &admin, Method::GET, &path, None).await;
        assert_eq!(st, 200, "{v}");
        paged.extend(v["data"].as_array().unwrap().iter().map(|d| d["id"].clone()));
        match v["next_before"].as_str() {
            Some(next) => before = format!("&before={next}"),
            None => break,
        }
    }
    assert_eq!(paged, whole);
    for bad in ["junk", "12_not-an-id", "x_01a25146-246a-71fc-88e6-dd425deeaae0"] {
        let path = format!("/admin/v1/webhooks/{generic_id}/deliveries?org={acme}&before={bad}");
        assert_eq!(call(&gw, &admin, Method::GET, &path, None).await.0, 400, "{bad}");
    }

    // slack: denied events only, as text
    let chat: Vec<Value> =
        hits.iter().filter(|h| h.0 == "/chat").map(|h| serde_json::from_str(&h.2).unwrap()).collect();
    assert!(chat.iter().all(|c| c["text"].as_str().unwrap().starts_with("[gatehouse] denied ")), "{chat:?}");

    // retries: two 500s, then delivered on the third attempt, all in the log
    let flaky_id = flaky["id"].as_str().unwrap();
    let ok = eventually(Duration::from_secs(30), || async {
        deliveries(&gw, &admin, &acme, flaky_id).await.iter().any(|d| d["status"] == "delivered")
    })
    .await;
    assert!(ok);
    let log = deliveries(&gw, &admin, &acme, flaky_id).await;
    assert_eq!(log[0]["attempts"], 3, "{log:?}");
    assert_eq!(log[0]["last_status"], 204);

    // a redirect is not followed: it fails after max_attempts, the target is never hit
    let moved = redirect["id"].as_str().unwrap();
    let failed = eventually(Duration::from_secs(30), || async {
        deliveries(&gw, &admin, &acme, moved).await.iter().any(|d| d["status"] == "failed")
    })
    .await;
    assert!(failed);
    let log = deliveries(&gw, &admin, &acme, moved).await;
    assert_eq!((log[0]["last_status"].as_i64(), log[0]["last_error"].as_str()), (Some(302), Some("http_status")));
    assert_eq!(seen.elsewhere.load(Ordering::SeqCst), 0);

    // nothing secret in any payload, and the webhook secret never in the trail or logs
    let all: String = hits.iter().map(|h| h.2.clone()).collect();
    assert!(!all.contains(&admin) && !all.contains("gth_") && !all.contains(&secret));
    let (_, export) = as_root(&gw, Method::GET, "/admin/v1/audit?limit=1000", None).await;
    assert!(!export.to_string().contains(&secret));
    assert!(!gw.logs_once("webhook").await.contains(&secret));

    // another org cannot see or delete these
    let other = new_org(&gw, "other").await;
    let (_, t2) = mint(&gw, &root(&gw), "org_admin", Some(&other)).await;
    let intruder = t2["token"].as_str().unwrap();
    let path = format!("/admin/v1/webhooks/{flaky_id}?org={acme}");
    assert_eq!(call(&gw, intruder, Method::DELETE, &path, None).await.0, 404);
    let (_, theirs) = call(&gw, intruder, Method::GET, "/admin/v1/webhooks", None).await;
    assert!(theirs["data"].as_array().unwrap().is_empty());
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The stored prev_hash of an event, from an export of its chain.
async fn prev_hash(gw: &TestGateway, token: &str, org: &str, stored: &Value) -> [u8; 32] {
    let resp = gw
        .http
        .get(format!("{}/admin/v1/audit/export?org={org}", gw.admin_url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    let rec = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["type"] == "record" && r["seq"] == stored["seq"])
        .unwrap();
    let h = rec["prev_hash"].as_str().unwrap();
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

#[tokio::test]
async fn private_targets_are_refused_before_and_after_dns() {
    let (url, seen) = receiver().await;
    let port = url.rsplit(':').next().unwrap().to_owned();
    // no allow-list: the platform admin has not opened any private range
    let gw = gateway().config("[webhooks]\nretry_base_ms = 50\nmax_attempts = 2\n").spawn().await;
    let root = root(&gw);
    for bad in [
        format!("http://127.0.0.1:{port}/generic"),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://[::1]/x".to_owned(),
        "http://[::ffff:127.0.0.1]/x".to_owned(),
        "http://[64:ff9b::a9fe:a9fe]/x".to_owned(),
        "http://[2002:7f00:1::]/x".to_owned(),
        "http://0x7f.1/x".to_owned(),
        "http://10.0.0.7/x".to_owned(),
        "file:///etc/passwd".to_owned(),
        "https://user:pw@hooks.example.com/x".to_owned(),
    ] {
        let (st, v) = subscribe(&gw, &root, json!({"name": "x", "kind": "generic", "url": bad, "events": ["*"]})).await;
        assert_eq!((st, v["error"]["param"].as_str()), (400, Some("url")), "{bad}: {v}");
    }
    // a name that resolves to loopback is refused at save too
    let local = format!("http://localhost:{port}/generic");
    let (st, v) = subscribe(&gw, &root, json!({"name": "x", "kind": "generic", "url": local, "events": ["*"]})).await;
    assert_eq!((st, v["error"]["param"].as_str()), (400, Some("url")), "{v}");
    let _ = gw.stop().await;

    // Saved while its range was allowed; then the allowance is gone (as when a name is rebound
    // to a private address after it was saved): refused at delivery, after DNS.
    let allowed =
        "[webhooks]\nallow_private_targets = [\"127.0.0.0/8\", \"::1/128\"]\nretry_base_ms = 50\nmax_attempts = 2\n";
    let gw = gateway().config(allowed).spawn().await;
    let root = crate::common::root(&gw);
    let (st, hook) =
        subscribe(&gw, &root, json!({"name": "sneaky", "kind": "generic", "url": local, "events": ["*"]})).await;
    assert_eq!(st, 201, "{hook}");
    let id = hook["id"].as_str().unwrap().to_owned();
    let dir = gw.stop().await;
    let gw = gateway().config("[webhooks]\nretry_base_ms = 50\nmax_attempts = 2\n").data_dir(dir).spawn().await;
    let (st, _) = call(&gw, &root, Method::POST, "/admin/v1/orgs", Some(json!({"name": "trigger"}))).await;
    assert_eq!(st, 201);
    let deliveries = format!("/admin/v1/webhooks/{id}/deliveries");
    let blocked = eventually(Duration::from_secs(30), || async {
        let (_, v) = call(&gw, &root, Method::GET, &deliveries, None).await;
        v["data"].as_array().is_some_and(|d| d.iter().any(|x| x["status"] == "blocked"))
    })
    .await;
    let (_, v) = call(&gw, &root, Method::GET, &deliveries, None).await;
    assert!(blocked, "{v}");
    assert!(seen.hits.lock().await.is_empty(), "nothing reached the private address");
}
