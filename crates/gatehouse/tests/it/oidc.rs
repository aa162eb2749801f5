//! OIDC federation end to end against a real OpenID Provider (node `oidc-provider`): JWT
//! access tokens with tenant and role claims, every algorithm we accept, key rotation by
//! restarting the provider with a new key set, expired tokens, wrong audience, the attack
//! headers, and a flood of unknown `kid`s that must not become a flood of JWKS fetches.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_testkit::oidc::OpenIdProvider;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{as_root, call, gateway, json};

const AUD: &str = "https://gatehouse.test";

pub fn oidc_config(op: &OpenIdProvider, extra: &str) -> String {
    format!(
        r#"
[[oidc]]
name = "op"
issuer = "{}"
audiences = ["{AUD}"]
claims = {{ org = "/org", project = "/project", roles = "/roles" }}
roles = {{ inference = ["chat:*", "embeddings:create", "models:read", "tokens:exchange"], chatter = ["chat:completions"] }}
clock_skew_secs = 1
unknown_kid_cooldown_secs = 2
{extra}
"#,
        op.issuer
    )
}

pub async fn acme(gw: &gatehouse_testkit::TestGateway) -> String {
    let (st, v) = as_root(gw, Method::POST, "/admin/v1/orgs", Some(json!({"name": "acme"}))).await;
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_str().unwrap();
    let path = format!("/admin/v1/orgs/{id}/projects");
    let (st, v) = as_root(gw, Method::POST, &path, Some(json!({"name": "default"}))).await;
    assert!(st == 201 || st == 400, "{v}");
    id.to_owned()
}

async fn chat(gw: &gatehouse_testkit::TestGateway, token: &str) -> (u16, Value) {
    let resp = gw.chat(token, "mock").await;
    let st = resp.status().as_u16();
    (st, json(resp).await)
}

fn now() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

fn claims(op: &OpenIdProvider) -> Value {
    json!({"iss": op.issuer, "aud": AUD, "sub": "forged", "exp": now() + 300, "iat": now(),
           "org": "acme", "project": "default", "roles": ["inference"]})
}

fn sign(header: &Header, claims: &Value, pem: &[u8]) -> String {
    let key = match header.alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem).unwrap(),
        _ => EncodingKey::from_ed_pem(pem).unwrap(),
    };
    jsonwebtoken::encode(header, claims, &key).unwrap()
}

fn at_jwt(alg: Algorithm, kid: &str) -> Header {
    let mut h = Header::new(alg);
    h.typ = Some("at+jwt".into());
    h.kid = Some(kid.into());
    h
}

#[tokio::test]
async fn jwt_access_tokens_from_a_real_openid_provider() {
    let Some(op) = OpenIdProvider::start(0, "g1").await else { return };
    let gw = gateway().config(&oidc_config(&op, "")).spawn().await;
    let org = acme(&gw).await;

    // Every accepted algorithm, as the provider signs it.
    for client in ["workload", "es-workload", "ed-workload"] {
        let t = op.token(client, AUD).await;
        let (st, v) = chat(&gw, &t).await;
        assert_eq!(st, 200, "{client}: {v}");
    }
    let audit_actor = "oidc:op:workload";
    // Roles map to scopes; an unknown role denies; an org that does not exist denies.
    let chatter = op.token("chat-only", AUD).await;
    assert_eq!(chat(&gw, &chatter).await.0, 200);
    let emb = gw.post("/v1/embeddings", Some(&chatter), &json!({"model": "mock-embedding", "input": "x"})).await;
    assert_eq!(emb.status(), 403);
    let (st, v) = chat(&gw, &op.token("stranger", AUD).await).await;
    assert_eq!((st, v["error"]["code"].as_str()), (403, Some("permission_denied")));
    let (st, v) = chat(&gw, &op.token("other-org", AUD).await).await;
    assert_eq!((st, v["error"]["code"].as_str()), (401, Some("invalid_token")));

    // Wrong audience.
    let (st, _) = chat(&gw, &op.token("workload", "https://other.test").await).await;
    assert_eq!(st, 401);

    // Expired (1 s lifetime, 1 s skew).
    let short = op.token("short", AUD).await;
    assert_eq!(chat(&gw, &short).await.0, 200);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let (st, v) = chat(&gw, &short).await;
    assert_eq!((st, v["error"]["code"].as_str()), (401, Some("expired_token")));

    // Forged with the provider's real key: our harness signs correctly...
    let real = op.key_pem("g1-rs");
    assert_eq!(chat(&gw, &sign(&at_jwt(Algorithm::RS256, "g1-rs"), &claims(&op), &real)).await.0, 200);
    // ...and each attack fails.
    let mut id_token = at_jwt(Algorithm::RS256, "g1-rs");
    id_token.typ = Some("JWT".into());
    let mut no_typ = at_jwt(Algorithm::RS256, "g1-rs");
    no_typ.typ = None;
    let mut jku = at_jwt(Algorithm::RS256, "attacker");
    jku.jku = Some(format!("{}/jwks", op.issuer));
    let mut x5u = at_jwt(Algorithm::RS256, "attacker");
    x5u.x5u = Some("https://attacker.example/cert.pem".into());
    let attacker = op.key_pem("attacker");
    let mut wrong_iss = claims(&op);
    wrong_iss["iss"] = json!("https://evil.example");
    let mut future = claims(&op);
    future["iat"] = json!(now() + 3600);
    let mut not_yet = claims(&op);
    not_yet["nbf"] = json!(now() + 3600);
    let mut no_exp = claims(&op);
    no_exp.as_object_mut().unwrap().remove("exp");
    let hs = jsonwebtoken::encode(
        &{
            let mut h = at_jwt(Algorithm::HS256, "g1-rs");
            h.typ = Some("at+jwt".into());
            h
        },
        &claims(&op),
        &EncodingKey::from_secret(&real),
    )
    .unwrap();
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt","kid":"g1-rs"}"#),
        URL_SAFE_NO_PAD.encode(claims(&op).to_string())
    );
    let mut es_as_rs = at_jwt(Algorithm::ES256, "g1-rs");
    es_as_rs.kid = Some("g1-rs".into());
    let attacks = [
        ("ID token (typ JWT)", sign(&id_token, &claims(&op), &real)),
        ("no typ", sign(&no_typ, &claims(&op), &real)),
        ("jku header", sign(&jku, &claims(&op), &attacker)),
        ("x5u header", sign(&x5u, &claims(&op), &attacker)),
        ("wrong issuer", sign(&at_jwt(Algorithm::RS256, "g1-rs"), &wrong_iss, &real)),
        ("issued in the future", sign(&at_jwt(Algorithm::RS256, "g1-rs"), &future, &real)),
        ("not yet valid", sign(&at_jwt(Algorithm::RS256, "g1-rs"), &not_yet, &real)),
        ("no exp", sign(&at_jwt(Algorithm::RS256, "g1-rs"), &no_exp, &real)),
        ("HS256 keyed with the public key material", hs),
        ("alg none", none),
        ("ES256 header on the RSA kid", sign(&es_as_rs, &claims(&op), &op.key_pem("g1-es"))),
        ("attacker key under the real kid", sign(&at_jwt(Algorithm::RS256, "g1-rs"), &claims(&op), &attacker)),
    ];
    for (what, t) in attacks {
        let (st, v) = chat(&gw, &t).await;
        assert_eq!(st, 401, "{what}: {v}");
    }

    // A flood of unknown kids costs the provider at most one JWKS fetch per cooldown (2 s).
    let before = op.jwks_fetches().await;
    let started = std::time::Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        let t = sign(&at_jwt(Algorithm::RS256, &format!("flood-{sent}")), &claims(&op), &attacker);
        assert_eq!(chat(&gw, &t).await.0, 401);
        sent += 1;
    }
    let fetched = op.jwks_fetches().await - before;
    assert!(sent >= 50, "only {sent} requests");
    assert!(fetched <= 1, "{sent} unknown kids in 1.5 s caused {fetched} JWKS fetches");

    // Key rotation: the provider restarts with a new key set on the same address.
    let old = op.token("workload", AUD).await;
    let port = op.port;
    op.stop().await;
    let op = OpenIdProvider::start(port, "g2").await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await; // let the unknown-kid cooldown pass
    let new = op.token("workload", AUD).await;
    let (st, v) = chat(&gw, &new).await;
    assert_eq!(st, 200, "a token under the new key verifies after one refetch: {v}");
    assert_eq!(chat(&gw, &old).await.0, 401, "the retired key no longer verifies");

    // The trail names the federated caller.
    let (_, trail) = as_root(&gw, Method::GET, &format!("/admin/v1/audit?org={org}&limit=1000"), None).await;
    assert!(trail.to_string().contains(audit_actor), "{audit_actor} not in the trail");
    op.stop().await;
}

/// A key-set refresh that fails (the issuer is down) keeps the last good set: tokens under
/// its keys keep verifying, and the failure is logged, not turned into refusals.
#[tokio::test]
async fn an_unreachable_issuer_keeps_its_last_good_key_set() {
    let Some(op) = OpenIdProvider::start(0, "g1").await else { return };
    let gw = gateway().config(&oidc_config(&op, "")).spawn().await;
    acme(&gw).await;
    let issued = op.token("workload", AUD).await;
    assert_eq!(chat(&gw, &issued).await.0, 200);
    let (real, attacker, body) = (op.key_pem("g1-rs"), op.key_pem("attacker"), claims(&op));
    op.stop().await;
    // past the unknown-kid cooldown (2 s), an unknown kid makes the gateway refetch: it fails
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(chat(&gw, &sign(&at_jwt(Algorithm::RS256, "rotated?"), &body, &attacker)).await.0, 401);
    let logs = gw.logs_once("keeping the last good set").await;
    assert!(logs.contains("cannot fetch the issuer's keys"), "the failed refresh is logged");
    assert_eq!(chat(&gw, &issued).await.0, 200, "a token issued before the outage still verifies");
    let during = sign(&at_jwt(Algorithm::RS256, "g1-rs"), &body, &real);
    assert_eq!(chat(&gw, &during).await.0, 200, "and one signed during it with a known key");
}

/// Org and project names resolve through a one-second cache: disabling either refuses JWT
/// callers within a second (the bound below leaves half a second for a loaded machine).
#[tokio::test]
async fn disabling_an_org_or_project_reaches_jwt_callers_within_a_second() {
    let Some(op) = OpenIdProvider::start(0, "g1").await else { return };
    let gw = gateway().config(&oidc_config(&op, "")).spawn().await;
    let org = acme(&gw).await;
    let token = op.token("workload", AUD).await;
    assert_eq!(chat(&gw, &token).await.0, 200);
    let (_, projects) = as_root(&gw, Method::GET, &format!("/admin/v1/orgs/{org}/projects"), None).await;
    let project = projects["data"].as_array().unwrap().iter().find(|p| p["name"] == "default").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let answers = |want: u16| {
        let (gw, token) = (&gw, &token);
        gatehouse_testkit::eventually(
            Duration::from_millis(1500),
            move || async move { chat(gw, token).await.0 == want },
        )
    };
    for (target, what) in [(format!("{org}/projects/{project}"), "project"), (org.clone(), "org")] {
        let (st, v) = as_root(&gw, Method::POST, &format!("/admin/v1/orgs/{target}/disable"), None).await;
        assert_eq!(st, 200, "{v}");
        assert!(answers(401).await, "a disabled {what} refuses its JWT callers within a second");
        let (code, v) = chat(&gw, &token).await;
        assert_eq!((code, v["error"]["code"].as_str()), (401, Some("invalid_token")), "{v}");
        let (st, v) = as_root(&gw, Method::POST, &format!("/admin/v1/orgs/{target}/enable"), None).await;
        assert_eq!(st, 200, "{v}");
        assert!(answers(200).await, "re-enabling the {what} lets them back in within a second");
    }
    op.stop().await;
}

async fn exchange(gw: &gatehouse_testkit::TestGateway, form: &[(&str, &str)]) -> (u16, Value, Option<String>) {
    let resp = gw.http.post(format!("{}/v1/token", gw.data_url)).form(form).send().await.unwrap();
    let st = resp.status().as_u16();
    // every answer, token or refusal, must stay out of caches (RFC 6749 5.1)
    assert_eq!(resp.headers().get("cache-control").map(|v| v.to_str().unwrap()), Some("no-store"), "{st}");
    let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    (st, resp.json().await.unwrap_or(Value::Null), retry)
}

const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

#[tokio::test]
async fn token_exchange_turns_a_workload_jwt_into_a_narrow_capability_token() {
    let Some(op) = OpenIdProvider::start(0, "x1").await else { return };
    let rules = r#"
[[exchange]]
issuer = "op"
org = "acme"
subject = "ci-*"
claims = { "/team" = "ml" }
scopes = ["chat:*", "models:read"]
models = ["mock"]
budget_usd = "2.50"
max_ttl_secs = 120
per_subject_per_minute = 4
"#;
    let gw = gateway().config(&oidc_config(&op, rules)).spawn().await;
    let org = acme(&gw).await;
    let jwt = op.token("ci-runner", AUD).await;

    let (st, v, _) =
        exchange(&gw, &[("grant_type", GRANT), ("subject_token", &jwt), ("subject_token_type", JWT)]).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["issued_token_type"], "urn:ietf:params:oauth:token-type:access_token");
    assert_eq!(v["token_type"], "Bearer");
    assert!(v["expires_in"].as_i64().unwrap() <= 120, "capped by the rule (and the JWT): {v}");
    let token = v["access_token"].as_str().unwrap();
    assert_eq!(chat(&gw, token).await.0, 200);
    let emb = gw.post("/v1/embeddings", Some(token), &json!({"model": "mock-embedding", "input": "x"})).await;
    assert_eq!(emb.status(), 403, "the rule grants chat only");
    let models = gw.get("/v1/models", Some(token)).await;
    assert_eq!(models.status(), 200);

    // A narrower scope may be asked for; a wider one may not.
    let (st, v, _) = exchange(
        &gw,
        &[("grant_type", GRANT), ("subject_token", &jwt), ("subject_token_type", JWT), ("scope", "chat:completions")],
    )
    .await;
    assert_eq!((st, v["scope"].as_str()), (200, Some("chat:completions")), "{v}");
    let (st, v, _) = exchange(
        &gw,
        &[("grant_type", GRANT), ("subject_token", &jwt), ("subject_token_type", JWT), ("scope", "embeddings:create")],
    )
    .await;
    assert_eq!((st, v["error"].as_str()), (400, Some("invalid_scope")));

    // A subject no rule admits; a forged token; the wrong grant; a malformed request.
    let other = op.token("workload", AUD).await;
    let (st, v, _) =
        exchange(&gw, &[("grant_type", GRANT), ("subject_token", &other), ("subject_token_type", JWT)]).await;
    assert_eq!((st, v["error"].as_str()), (400, Some("invalid_grant")));
    let mut tampered = jwt.clone();
    tampered.pop();
    let (st, v, _) =
        exchange(&gw, &[("grant_type", GRANT), ("subject_token", &tampered), ("subject_token_type", JWT)]).await;
    assert_eq!((st, v["error"].as_str()), (400, Some("invalid_grant")));
    let (st, v, _) = exchange(&gw, &[("grant_type", "client_credentials"), ("subject_token", &jwt)]).await;
    assert_eq!((st, v["error"].as_str()), (400, Some("unsupported_grant_type")));
    let (st, v, _) = exchange(&gw, &[("grant_type", GRANT), ("subject_token", &jwt)]).await;
    assert_eq!((st, v["error"].as_str()), (400, Some("invalid_request")));

    // Rate-limited per subject: 4 per minute, three used above (two 200s and one invalid_scope).
    let form = [("grant_type", GRANT), ("subject_token", jwt.as_str()), ("subject_token_type", JWT)];
    let (st, _, _) = exchange(&gw, &form).await;
    assert_eq!(st, 200);
    let (st, v, retry) = exchange(&gw, &form).await;
    assert_eq!((st, v["error"].as_str()), (429, Some("slow_down")), "{v}");
    assert!(retry.is_some_and(|r| r.parse::<u64>().unwrap() >= 1));

    // Audited, with the workload's identity as the actor.
    let (_, trail) = as_root(&gw, Method::GET, &format!("/admin/v1/audit?org={org}&limit=1000"), None).await;
    let text = trail.to_string();
    assert!(text.contains("token.exchange") && text.contains("oidc:op:ci-runner"), "{text}");
    op.stop().await;
}

#[tokio::test]
async fn the_control_plane_accepts_federated_operators_with_mapped_roles_only() {
    let Some(op) = OpenIdProvider::start(0, "c1").await else { return };
    let extra = r#"planes = ["data", "control"]
admin_roles = { "gatehouse-admins" = "org_admin" }"#;
    let gw = gateway().config(&oidc_config(&op, extra)).spawn().await;
    let org = acme(&gw).await;
    let admin = op.token("admin-bot", AUD).await;
    let (st, v) = call(&gw, &admin, Method::GET, "/admin/v1/orgs", None).await;
    assert_eq!(st, 200, "{v}");
    let names: Vec<&str> = v["data"].as_array().unwrap().iter().filter_map(|o| o["name"].as_str()).collect();
    assert_eq!(names, ["acme"], "an org admin sees its own org only");
    let (st, _) = call(&gw, &admin, Method::POST, "/admin/v1/orgs", Some(json!({"name": "x"}))).await;
    assert_eq!(st, 403, "org_admin cannot create orgs");
    let (st, v) = call(
        &gw,
        &admin,
        Method::POST,
        "/admin/v1/capabilities",
        Some(json!({"name": "fed", "scopes": ["chat:*"], "expires_in_seconds": 60})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    // A role the control plane does not map denies; a data-plane-only issuer config would too.
    let (st, v) = call(&gw, &op.token("workload", AUD).await, Method::GET, "/admin/v1/orgs", None).await;
    assert_eq!((st, v["error"]["code"].as_str()), (403, Some("permission_denied")));
    let (st, _) =
        call(&gw, &op.token("admin-bot", "https://other.test").await, Method::GET, "/admin/v1/orgs", None).await;
    assert_eq!(st, 401);
    let (_, trail) = as_root(&gw, Method::GET, &format!("/admin/v1/audit?org={org}&limit=1000"), None).await;
    assert!(trail.to_string().contains("oidc:op:admin-bot"));
    op.stop().await;
}
