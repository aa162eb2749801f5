//! The control plane: orgs and projects, tenant isolation, escalation, and the audit trail.

use std::collections::HashMap;
use std::time::Duration;

use gatehouse_testkit::eventually;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{as_root, call, gateway, mint, new_org, root};

#[tokio::test]
async fn disabling_a_project_or_org_stops_its_keys_within_a_second() {
    let gw = gateway().spawn().await;
    let org = new_org(&gw, "acme").await;
    let (st, project) =
        as_root(&gw, Method::POST, &format!("/admin/v1/orgs/{org}/projects"), Some(json!({"name": "web"}))).await;
    assert_eq!(st, 201, "{project}");
    let pid = project["id"].as_str().unwrap();
    let (_, key) = gw.create_key(json!({"name": "k", "org": "acme", "project": "web"})).await;
    assert_eq!(gw.chat(&key, "mock").await.status(), 200);

    let works = |want: u16| {
        let key = key.clone();
        let gw = &gw;
        async move { eventually(Duration::from_secs(1), || async { gw.chat(&key, "mock").await.status() == want }).await }
    };
    let (st, _) = as_root(&gw, Method::POST, &format!("/admin/v1/orgs/{org}/projects/{pid}/disable"), None).await;
    assert_eq!(st, 200);
    assert!(works(401).await, "a disabled project's keys stop within a second");
    let (st, _) = as_root(&gw, Method::POST, &format!("/admin/v1/orgs/{org}/projects/{pid}/enable"), None).await;
    assert_eq!(st, 200);
    assert!(works(200).await, "re-enabling restores the keys");
    let (st, v) = as_root(&gw, Method::POST, &format!("/admin/v1/orgs/{org}/disable"), None).await;
    assert_eq!(st, 200);
    assert!(v["disabled_at"].is_i64());
    assert!(works(401).await, "a disabled org's keys stop within a second");
    // the default org is untouched
    assert_eq!(gw.chat(gw.key(), "mock").await.status(), 200);
}

#[tokio::test]
async fn a_keys_last_use_is_recorded_behind_the_requests() {
    let gw = gateway().spawn().await;
    let (used, secret) = gw.create_key(json!({"name": "used"})).await;
    let (idle, _) = gw.create_key(json!({"name": "idle"})).await;
    let last_used = |id: String| {
        let gw = &gw;
        async move {
            let (st, v) = as_root(gw, Method::GET, &format!("/admin/v1/keys/{id}"), None).await;
            assert_eq!(st, 200, "{v}");
            v["last_used_at"].as_i64()
        }
    };
    assert_eq!(last_used(used.clone()).await, None, "a new key was never used");
    let before = gatehouse_store::now_ms();
    assert_eq!(gw.chat(&secret, "mock").await.status(), 200);
    assert!(
        eventually(Duration::from_secs(10), || async { last_used(used.clone()).await.is_some_and(|t| t >= before) })
            .await,
        "the use reaches the store within a flush: {}",
        gw.logs()
    );
    let first = last_used(used.clone()).await.unwrap();
    assert!(first <= gatehouse_store::now_ms());
    assert_eq!(last_used(idle.clone()).await, None, "a key nobody used stays unused");
    // a refused request (unknown model) still authenticated the key: it counts as a use
    assert_eq!(gw.chat(&secret, "no-such-model").await.status(), 404);
    assert!(
        eventually(Duration::from_secs(10), || async { last_used(used.clone()).await.is_some_and(|t| t > first) })
            .await,
        "each later use moves it forward"
    );
}

#[tokio::test]
async fn tenants_are_isolated_and_nobody_escalates() {
    let gw = gateway().spawn().await;
    let acme = new_org(&gw, "acme").await;
    let globex = new_org(&gw, "globex").await;
    let (st, admin) = mint(&gw, &root(&gw), "org_admin", Some(&acme)).await;
    assert_eq!(st, 201, "{admin}");
    let admin = admin["token"].as_str().unwrap().to_owned();
    let (_, viewer) = mint(&gw, &admin, "viewer", Some(&acme)).await;
    let viewer = viewer["token"].as_str().unwrap().to_owned();

    // an org admin sees exactly its org
    let (st, list) = call(&gw, &admin, Method::GET, "/admin/v1/orgs", None).await;
    assert_eq!(st, 200);
    let names: Vec<&str> = list["data"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["acme"]);

    // another tenant's objects answer exactly like missing ones
    let missing = gatehouse_core::OrgId::generate().to_string();
    let (st_other, body_other) = call(&gw, &admin, Method::GET, &format!("/admin/v1/orgs/{globex}"), None).await;
    let (st_missing, body_missing) = call(&gw, &admin, Method::GET, &format!("/admin/v1/orgs/{missing}"), None).await;
    assert_eq!((st_other, &body_other), (st_missing, &body_missing));
    assert_eq!(st_other, 404);
    for (method, path, body) in [
        (Method::PATCH, format!("/admin/v1/orgs/{globex}"), Some(json!({"name": "pwned"}))),
        (Method::POST, format!("/admin/v1/orgs/{globex}/projects"), Some(json!({"name": "x"}))),
        (Method::GET, format!("/admin/v1/orgs/{globex}/projects"), None),
        (Method::GET, "/admin/v1/keys?org=globex".to_owned(), None),
        (Method::POST, "/admin/v1/keys".to_owned(), Some(json!({"name": "x", "org": "globex"}))),
    ] {
        let (st, v) = call(&gw, &admin, method.clone(), &path, body).await;
        assert_eq!(st, 404, "{method} {path}: {v}");
    }

    // escalation: no platform admins from an org admin, no tokens for other orgs, no org switches
    assert_eq!(mint(&gw, &admin, "platform_admin", None).await.0, 403);
    assert_eq!(mint(&gw, &admin, "org_admin", Some(&globex)).await.0, 404);
    assert_eq!(call(&gw, &admin, Method::POST, "/admin/v1/orgs", Some(json!({"name": "new"}))).await.0, 403);
    assert_eq!(call(&gw, &admin, Method::POST, &format!("/admin/v1/orgs/{acme}/disable"), None).await.0, 403);
    // a viewer reads but never writes
    assert_eq!(call(&gw, &viewer, Method::GET, &format!("/admin/v1/orgs/{acme}/projects"), None).await.0, 200);
    assert_eq!(
        call(&gw, &viewer, Method::POST, &format!("/admin/v1/orgs/{acme}/projects"), Some(json!({"name": "v"})))
            .await
            .0,
        403
    );
    assert_eq!(mint(&gw, &viewer, "viewer", Some(&acme)).await.0, 403);
    // mass assignment: fields that are not ours to set are rejected
    let (st, v) = call(
        &gw,
        &admin,
        Method::POST,
        &format!("/admin/v1/orgs/{acme}/projects"),
        Some(json!({"name": "p", "org_id": globex})),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    // the org admin does manage its own org
    assert_eq!(
        call(&gw, &admin, Method::POST, &format!("/admin/v1/orgs/{acme}/projects"), Some(json!({"name": "mine"})))
            .await
            .0,
        201
    );
}

#[tokio::test]
async fn every_decision_is_audited_with_its_facts() {
    let gw = gateway().spawn().await;
    let acme = new_org(&gw, "acme").await;
    let (_, admin) = mint(&gw, &root(&gw), "org_admin", Some(&acme)).await;
    let admin = admin["token"].as_str().unwrap().to_owned();
    call(&gw, &admin, Method::POST, &format!("/admin/v1/orgs/{acme}/projects"), Some(json!({"name": "web"}))).await;
    call(&gw, &admin, Method::POST, "/admin/v1/orgs", Some(json!({"name": "nope"}))).await;
    call(&gw, "gtha_wrong", Method::GET, "/admin/v1/orgs", None).await;

    let (st, audit) = as_root(&gw, Method::GET, "/admin/v1/audit?limit=50", None).await;
    assert_eq!(st, 200);
    let events = audit["data"].as_array().unwrap();
    let find = |action: &str, outcome: &str| {
        events.iter().find(|e| e["action"] == action && e["outcome"] == outcome).cloned().unwrap_or(Value::Null)
    };
    let created = find("project.create", "allowed");
    assert_eq!(created["org_id"], acme.as_str());
    assert_eq!(created["status"], 201);
    assert!(created["request_id"].is_string() && created["source"] == "127.0.0.1", "{created}");
    assert_eq!(find("org.create", "denied")["status"], 403);
    assert_eq!(find("auth.admin_token", "denied")["actor"], "anonymous");
    assert!(find("token.create", "allowed").is_object());

    // an org admin reads only its org's trail
    let (_, scoped) = call(&gw, &admin, Method::GET, "/admin/v1/audit", None).await;
    assert!(scoped["data"].as_array().unwrap().iter().all(|e| e["org_id"] == acme.as_str()), "{scoped}");
    // no secret ever lands in the trail
    assert!(!audit.to_string().contains("gtha_"));
    let logs = gw.logs_once("audit.read").await;
    assert!(logs.contains("admin decision"));
    assert!(!logs.contains(&admin), "admin tokens never reach the log");
}

#[tokio::test]
async fn members_have_bounded_roles_and_leaving_revokes_their_tokens() {
    let gw = gateway().spawn().await;
    let acme = new_org(&gw, "acme").await;
    let (_, admin) = mint(&gw, &root(&gw), "org_admin", Some(&acme)).await;
    let admin = admin["token"].as_str().unwrap().to_owned();
    let members = format!("/admin/v1/orgs/{acme}/members");

    let add = |role: &str| json!({"email": "ann@example.com", "name": "Ann", "role": role});
    let (st, ann) = call(&gw, &admin, Method::POST, &members, Some(add("member"))).await;
    assert_eq!(st, 201, "{ann}");
    let ann_id = ann["user_id"].as_str().unwrap().to_owned();
    assert_eq!(call(&gw, &admin, Method::POST, &members, Some(add("platform_admin"))).await.0, 403);
    assert_eq!(
        call(&gw, &admin, Method::POST, &members, Some(add("superuser"))).await.0,
        400,
        "unknown roles are refused"
    );
    let (st, v) =
        call(&gw, &admin, Method::POST, &members, Some(json!({"email": "bad", "name": "x", "role": "viewer"}))).await;
    assert_eq!((st, v["error"]["param"].as_str()), (400, Some("email")));

    // a token for ann may not exceed ann's role
    let token_for = |role: &str| json!({"name": "ann-token", "role": role, "org": acme, "user": ann_id});
    assert_eq!(call(&gw, &admin, Method::POST, "/admin/v1/tokens", Some(token_for("org_admin"))).await.0, 403);
    let (st, t) = call(&gw, &admin, Method::POST, "/admin/v1/tokens", Some(token_for("member"))).await;
    assert_eq!(st, 201, "{t}");
    let ann_token = t["token"].as_str().unwrap().to_owned();
    // a member cannot manage members
    assert_eq!(
        call(
            &gw,
            &ann_token,
            Method::POST,
            &members,
            Some(json!({"email": "bob@example.com", "name": "Bob", "role": "viewer"}))
        )
        .await
        .0,
        403
    );
    let (st, list) = call(&gw, &admin, Method::GET, &members, None).await;
    assert_eq!(st, 200);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    // leaving the org revokes the tokens that acted for ann there
    assert_eq!(call(&gw, &admin, Method::DELETE, &format!("{members}/{ann_id}"), None).await.0, 200);
    assert_eq!(call(&gw, &ann_token, Method::GET, &format!("/admin/v1/orgs/{acme}"), None).await.0, 401);
    assert_eq!(call(&gw, &admin, Method::DELETE, &format!("{members}/{ann_id}"), None).await.0, 404);
}

#[tokio::test]
async fn control_plane_mutations_are_rate_limited_per_token() {
    let gw = gateway().server("admin_mutations_per_minute = 8").spawn().await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..3 {
        let resp = gw
            .http
            .post(format!("{}/admin/v1/orgs", gw.admin_url))
            .bearer_auth(root(&gw))
            .json(&json!({"name": format!("o{i}")}))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
        retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    }
    assert_eq!(statuses, [201, 201, 429], "a burst of a quarter of the per-minute rate, then 429");
    assert!(retry_after.is_some_and(|s| s.parse::<u32>().unwrap() >= 1));
    // reads are not mutations
    assert_eq!(as_root(&gw, Method::GET, "/admin/v1/orgs", None).await.0, 200);
    let (_, audit) = as_root(&gw, Method::GET, "/admin/v1/audit", None).await;
    assert!(audit.to_string().contains("ratelimit.admin"), "{audit}");
}

#[tokio::test]
async fn a_project_allow_list_bounds_its_keys() {
    let gw = gateway().spawn().await;
    let org = new_org(&gw, "acme").await;
    let (st, p) = as_root(
        &gw,
        Method::POST,
        &format!("/admin/v1/orgs/{org}/projects"),
        Some(json!({"name": "web", "models": ["mock"]})),
    )
    .await;
    assert_eq!(st, 201, "{p}");
    let pid = p["id"].as_str().unwrap();

    // a key cannot be wider than its project
    let (st, v) = as_root(
        &gw,
        Method::POST,
        "/admin/v1/keys",
        Some(json!({"name": "wide", "org": "acme", "project": "web", "models": ["mock-embedding"]})),
    )
    .await;
    assert_eq!((st, v["error"]["param"].as_str()), (403, Some("models")));

    // a key without its own list gets the project's
    let (_, key) = gw.create_key(json!({"name": "k", "org": "acme", "project": "web"})).await;
    assert_eq!(gw.chat(&key, "mock").await.status(), 200);
    let emb = gw.post("/v1/embeddings", Some(&key), &json!({"model": "mock-embedding", "input": "x"})).await;
    assert_eq!(emb.status(), 404);

    // and so does a capability token minted for the project
    let (st, cap) = as_root(
        &gw,
        Method::POST,
        "/admin/v1/capabilities",
        Some(json!({"name": "ci", "org": "acme", "project": "web", "scopes": ["chat:*"], "expires_in_seconds": 600})),
    )
    .await;
    assert_eq!(st, 201, "{cap}");
    let token = cap["token"].as_str().unwrap().to_owned();
    assert_eq!(gw.chat(&token, "mock").await.status(), 200);

    // narrowing the project reaches its keys and its capability tokens within a second (a
    // regression: tokens kept the old allow-list cached for up to 30 s)
    let (st, _) = as_root(
        &gw,
        Method::PATCH,
        &format!("/admin/v1/orgs/{org}/projects/{pid}"),
        Some(json!({"name": "web", "models": ["mock-embedding"]})),
    )
    .await;
    assert_eq!(st, 200);
    assert!(
        gatehouse_testkit::eventually(std::time::Duration::from_secs(1), || async {
            gw.chat(&key, "mock").await.status() == 404 && gw.chat(&token, "mock").await.status() == 404
        })
        .await
    );
}

/// Replaces values that change per run (ids, times, secrets) with stable placeholders, keeping
/// the shape and the secret's prefix so the snapshot shows exactly what a response exposes.
fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                match (k.as_str(), &*val) {
                    ("key" | "token", Value::String(s)) => {
                        *val = json!(format!("[secret {}…]", &s[..s.find('_').map_or(0, |i| i + 1)]))
                    }
                    ("hint", Value::String(_)) => *val = json!("[hint]"),
                    (k, Value::String(_))
                        if k == "id" || k.ends_with("_id") || k == "rotated_from" || k == "target" =>
                    {
                        *val = json!("[id]")
                    }
                    ("actor", Value::String(_)) => *val = json!("[actor]"),
                    ("hash", Value::String(_)) => *val = json!("[hash]"),
                    ("next_after", Value::String(_)) => *val = json!("[cursor]"),
                    ("chain", Value::String(s)) if s.starts_with("org/") => *val = json!("org/[id]"),
                    (k, Value::Number(_)) if k.ends_with("_at") || k == "at" => *val = json!("[time]"),
                    ("at", Value::String(_)) => *val = json!("[time]"),
                    _ => redact(val),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

#[tokio::test]
async fn admin_responses_expose_no_hash_and_each_secret_once() {
    let gw = gateway().spawn().await;
    let org = new_org(&gw, "acme").await;
    let mut shown = Vec::new();
    let mut step = |label: &str, v: &Value| {
        let mut v = v.clone();
        redact(&mut v);
        shown.push(json!({"step": label, "body": v}));
    };
    let (_, v) = as_root(
        &gw,
        Method::POST,
        &format!("/admin/v1/orgs/{org}/projects"),
        Some(json!({"name": "web", "models": ["mock"]})),
    )
    .await;
    step("project.create", &v);
    let (_, v) = as_root(
        &gw,
        Method::POST,
        &format!("/admin/v1/orgs/{org}/members"),
        Some(json!({"email": "ann@example.com", "name": "Ann", "role": "member"})),
    )
    .await;
    step("member.set", &v);
    let (_, v) =
        as_root(&gw, Method::POST, "/admin/v1/tokens", Some(json!({"name": "ci", "role": "viewer", "org": org}))).await;
    step("token.create", &v);
    let (_, created) =
        as_root(&gw, Method::POST, "/admin/v1/keys", Some(json!({"name": "k", "org": "acme", "project": "web"}))).await;
    step("key.create", &created);
    let id = created["id"].as_str().unwrap();
    let (_, v) = as_root(&gw, Method::GET, &format!("/admin/v1/keys/{id}?org=acme"), None).await;
    step("key.read", &v);
    let (_, v) = as_root(&gw, Method::POST, &format!("/admin/v1/keys/{id}/rotate?org=acme"), Some(json!({}))).await;
    step("key.rotate", &v);
    let (_, v) = as_root(&gw, Method::GET, "/admin/v1/keys?org=acme", None).await;
    step("key.list", &v);
    let (_, v) = as_root(&gw, Method::GET, "/admin/v1/audit?limit=3", None).await;
    step("audit.read", &v);
    insta::assert_json_snapshot!("admin_responses", shown);

    // the digest of a key (32 bytes, as hex or base64) never appears in any answer
    let everything = serde_json::to_string(&shown).unwrap();
    assert!(!everything.contains("digest"));
}

#[tokio::test]
async fn members_mint_keys_only_in_their_own_projects() {
    let gw = gateway().spawn().await;
    let org = new_org(&gw, "acme").await;
    let mut projects = HashMap::new();
    for name in ["web", "ops"] {
        let (_, p) =
            as_root(&gw, Method::POST, &format!("/admin/v1/orgs/{org}/projects"), Some(json!({"name": name}))).await;
        projects.insert(name, p["id"].as_str().unwrap().to_owned());
    }
    let (_, ann) = as_root(
        &gw,
        Method::POST,
        &format!("/admin/v1/orgs/{org}/members"),
        Some(json!({"email": "ann@example.com", "name": "Ann", "role": "member"})),
    )
    .await;
    let ann = ann["user_id"].as_str().unwrap().to_owned();
    let (st, _) = as_root(
        &gw,
        Method::POST,
        &format!("/admin/v1/orgs/{org}/projects/{}/members", projects["web"]),
        Some(json!({"user_id": ann})),
    )
    .await;
    assert_eq!(st, 201);
    let (_, tok) = as_root(
        &gw,
        Method::POST,
        "/admin/v1/tokens",
        Some(json!({"name": "ann", "role": "member", "org": org, "user": ann})),
    )
    .await;
    let ann_token = tok["token"].as_str().unwrap().to_owned();
    let (_, unbound) =
        as_root(&gw, Method::POST, "/admin/v1/tokens", Some(json!({"name": "nobody", "role": "member", "org": org})))
            .await;
    let unbound = unbound["token"].as_str().unwrap().to_owned();

    let mint = |token: String, project: &'static str| {
        let gw = &gw;
        async move {
            call(
                gw,
                &token,
                Method::POST,
                "/admin/v1/keys",
                Some(json!({"name": "mine", "org": "acme", "project": project})),
            )
            .await
        }
    };
    let (st, key) = mint(ann_token.clone(), "web").await;
    assert_eq!(st, 201, "{key}");
    assert_eq!(gw.chat(key["key"].as_str().unwrap(), "mock").await.status(), 200);
    assert_eq!(mint(ann_token.clone(), "ops").await.0, 403, "not a member of ops");
    // a member revokes their own keys, and only those
    let own_id = key["id"].as_str().unwrap().to_owned();
    let (_, other) =
        as_root(&gw, Method::POST, "/admin/v1/keys", Some(json!({"name": "admins", "org": "acme", "project": "web"})))
            .await;
    let other_id = other["id"].as_str().unwrap().to_owned();
    assert_eq!(
        call(&gw, &ann_token, Method::POST, &format!("/admin/v1/keys/{other_id}/revoke?org=acme"), None).await.0,
        403
    );
    assert_eq!(
        call(&gw, &ann_token, Method::POST, &format!("/admin/v1/keys/{own_id}/revoke?org=acme"), None).await.0,
        200
    );
    assert_eq!(mint(unbound, "web").await.0, 403, "a member token bound to nobody owns nothing");
    // and someone outside the org cannot add people to its projects
    let (st, _) = as_root(
        &gw,
        Method::POST,
        &format!("/admin/v1/orgs/{org}/projects/{}/members", projects["ops"]),
        Some(json!({"user_id": gatehouse_core::UserId::generate().to_string()})),
    )
    .await;
    assert_eq!(st, 404, "only org members join projects");
}

#[tokio::test]
async fn projects_carry_default_limits_and_no_unenforced_policy_name() {
    let gw = gateway().spawn().await;
    let org = new_org(&gw, "acme").await;
    let path = format!("/admin/v1/orgs/{org}/projects");
    let body = json!({"name": "web", "default_limits": {"rpm": 60, "tpm": 100000}});
    let (st, p) = as_root(&gw, Method::POST, &path, Some(body)).await;
    assert_eq!(st, 201, "{p}");
    assert_eq!(p["default_limits"], json!({"rpm": 60, "tpm": 100000}));
    assert!(p.get("guardrail_policy").is_none(), "a name nothing enforced is gone: {p}");
    let (st, v) = as_root(&gw, Method::POST, &path, Some(json!({"name": "x", "default_limits": {"rpm": 0}}))).await;
    assert_eq!((st, v["error"]["param"].as_str()), (400, Some("default_limits")));
    // guardrail policies are set under /guardrails; the old free-form name is refused, not ignored
    let (st, _) = as_root(&gw, Method::POST, &path, Some(json!({"name": "x", "guardrail_policy": "strict"}))).await;
    assert_eq!(st, 400);
    let (st, _) = as_root(&gw, Method::POST, &path, Some(json!({"name": "x", "default_limits": {"rps": 1}}))).await;
    assert_eq!(st, 400, "unknown limit kinds are refused");
}

#[tokio::test]
async fn a_revoked_admin_token_stops_at_once_and_listings_hold_no_secret() {
    let gw = gateway().spawn().await;
    let acme = new_org(&gw, "acme").await;
    let (_, admin) = mint(&gw, &root(&gw), "org_admin", Some(&acme)).await;
    let admin_token = admin["token"].as_str().unwrap().to_owned();
    let (_, viewer) = mint(&gw, &admin_token, "viewer", Some(&acme)).await;
    let viewer_token = viewer["token"].as_str().unwrap().to_owned();
    let viewer_id = viewer["id"].as_str().unwrap().to_owned();
    assert_eq!(call(&gw, &viewer_token, Method::GET, &format!("/admin/v1/orgs/{acme}"), None).await.0, 200);

    let (st, list) = call(&gw, &admin_token, Method::GET, "/admin/v1/tokens", None).await;
    assert_eq!(st, 200);
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "the org's own tokens only: {list}");
    assert!(!list.to_string().contains("gtha_"), "listings hold no secret");

    // an org admin cannot revoke the platform's bootstrap token (it does not exist for them)
    let (_, all) = as_root(&gw, Method::GET, "/admin/v1/tokens", None).await;
    let bootstrap = all["data"].as_array().unwrap().iter().find(|t| t["role"] == "platform_admin").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        call(&gw, &admin_token, Method::POST, &format!("/admin/v1/tokens/{bootstrap}/revoke"), None).await.0,
        404
    );

    assert_eq!(
        call(&gw, &admin_token, Method::POST, &format!("/admin/v1/tokens/{viewer_id}/revoke"), None).await.0,
        200
    );
    assert_eq!(call(&gw, &viewer_token, Method::GET, &format!("/admin/v1/orgs/{acme}"), None).await.0, 401);
    assert_eq!(
        call(&gw, &admin_token, Method::POST, &format!("/admin/v1/tokens/{viewer_id}/revoke"), None).await.0,
        404
    );
}

#[tokio::test]
async fn the_control_plane_answers_only_allowed_hosts() {
    let gw = gateway().server("admin_allowed_hosts = [\"Gatehouse-Admin.internal\"]").spawn().await;
    let token = root(&gw);
    let port = gw.admin_url.rsplit(':').next().unwrap().to_owned();
    let get = |path: &str, host: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n")
    };
    // a DNS-rebinding page names its own host: refused before authentication, on every route
    for path in ["/admin/v1/orgs", "/metrics", "/admin/v1/openapi.json", "/admin/v1/nothing-here"] {
        for host in ["rebind.evil.example", &format!("rebind.evil.example:{port}"), "localhost.evil.example"] {
            let (status, body) = crate::common::raw(&gw.admin_url, get(path, host).as_bytes()).await;
            assert_eq!(status, 421, "{path} {host}: {body}");
            assert!(body.contains("\"host_not_allowed\""), "{body}");
            assert!(!body.contains("evil"), "the refusal does not echo the Host");
        }
    }
    // no Host at all (HTTP/1.0) is refused too
    let (status, _) =
        crate::common::raw(&gw.admin_url, b"GET /admin/v1/organizations HTTP/1.0\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, 421);
    // loopback names, the listen address and configured names are served
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("gatehouse-admin.internal:{port}"),
        "GATEHOUSE-ADMIN.INTERNAL.".to_owned(),
    ] {
        let (status, body) = crate::common::raw(&gw.admin_url, get("/admin/v1/orgs", &host).as_bytes()).await;
        assert_eq!(status, 200, "{host}: {body}");
    }
    // probes are exempt: orchestrators probe by pod address
    let (status, _) = crate::common::raw(&gw.admin_url, get("/healthz", "10.9.8.7:1").as_bytes()).await;
    assert_eq!(status, 200);
    // the data plane is key-authenticated and not Host-bound
    assert_eq!(gw.chat(gw.key(), "mock").await.status(), 200);
}

#[tokio::test]
async fn an_allowed_host_that_is_not_a_host_is_refused_at_start() {
    for bad in ["http://admin.example", "admin.example:8081", "admin.example/x"] {
        let res = gateway().server(&format!("admin_allowed_hosts = [\"{bad}\"]")).try_spawn().await;
        assert!(res.is_err(), "{bad} was accepted");
    }
}

/// Token guessing is bounded per source address, authenticated or not: past a quarter of the
/// per-minute rate in a burst, every request from that address is 429 with Retry-After
/// (a valid token included).
#[tokio::test]
async fn control_plane_requests_are_rate_limited_per_source_address() {
    let gw = gateway().server("admin_requests_per_minute_per_source = 8").spawn().await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let resp =
            gw.http.get(format!("{}/admin/v1/orgs", gw.admin_url)).bearer_auth("gtha_guess").send().await.unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 429, 429], "a burst of two guesses, then 429");
    let resp = gw.http.get(format!("{}/admin/v1/orgs", gw.admin_url)).bearer_auth(root(&gw)).send().await.unwrap();
    assert_eq!(resp.status(), 429, "the address is limited, whatever it presents");
    assert!(resp.headers().get("retry-after").is_some_and(|v| v.to_str().unwrap().parse::<u32>().unwrap() >= 1));
    assert_eq!(
        gw.http.get(format!("{}/healthz", gw.admin_url)).send().await.unwrap().status(),
        200,
        "probes are not limited"
    );
}

/// A browser on an operator's machine must not be able to read either plane from another
/// origin (no CORS is configured, so none is granted), frame the control plane, or cache what
/// either answered (a key is shown once).
#[tokio::test]
async fn both_planes_answer_hardened_and_grant_no_cross_origin_reads() {
    let gw = gateway().spawn().await;
    let key = gw.key();
    let evil = "https://evil.example";
    let chat = json!({"model": "mock", "messages": [{"role": "user", "content": "hi"}]});
    let answers = [
        gw.http.get(format!("{}/admin/v1/orgs", gw.admin_url)).bearer_auth(root(&gw)).header("origin", evil),
        gw.http
            .post(format!("{}/admin/v1/keys", gw.admin_url))
            .bearer_auth(root(&gw))
            .header("origin", evil)
            .json(&json!({"name": "shown-once", "org": "default", "project": "default"})),
        gw.http.get(format!("{}/admin/v1/orgs", gw.admin_url)).header("origin", evil),
        gw.http
            .post(format!("{}/v1/chat/completions", gw.data_url))
            .bearer_auth(key)
            .header("origin", evil)
            .json(&chat),
        gw.http.post(format!("{}/v1/chat/completions", gw.data_url)).header("origin", evil).json(&chat),
    ];
    for (i, (req, expected)) in answers.into_iter().zip([200, 201, 401, 200, 401]).enumerate() {
        let resp = req.send().await.unwrap();
        let control = i < 3;
        let (status, h) = (resp.status().as_u16(), resp.headers().clone());
        let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        assert_eq!(status, expected, "{i}");
        assert_eq!(get("x-content-type-options"), "nosniff", "{i}");
        assert_eq!(get("cache-control"), "no-store", "{i}");
        assert_eq!(get("x-frame-options"), if control { "DENY" } else { "" }, "{i}");
        assert_eq!(
            get("content-security-policy"),
            if control { "default-src 'none'; frame-ancestors 'none'" } else { "" },
            "{i}"
        );
        assert!(!h.contains_key("access-control-allow-origin"), "{i}: {h:?}");
        assert!(!h.contains_key("access-control-allow-credentials"), "{i}: {h:?}");
    }
    // a preflight is not granted either: no allow-origin, no allowed methods or headers
    for url in [format!("{}/admin/v1/keys", gw.admin_url), format!("{}/v1/chat/completions", gw.data_url)] {
        let resp = gw
            .http
            .request(Method::OPTIONS, &url)
            .header("origin", evil)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
            .await
            .unwrap();
        let h = resp.headers();
        assert!(
            ["access-control-allow-origin", "access-control-allow-methods", "access-control-allow-headers"]
                .iter()
                .all(|n| !h.contains_key(*n)),
            "{url}: {} {h:?}",
            resp.status()
        );
    }
}

/// With `server.admin_cors_origins`, exactly those origins may call the control plane from a
/// browser: the preflight and the answer name the origin (never `*`), never allow credentials,
/// and any other origin still gets nothing. The data plane is unaffected.
#[tokio::test]
async fn listed_origins_and_only_they_may_call_the_control_plane_cross_origin() {
    let gw = gateway().server("admin_cors_origins = [\"https://Ops.Example.com\"]").spawn().await;
    let ops = "https://ops.example.com";
    let preflight = |url: String, origin: &'static str| {
        gw.http
            .request(Method::OPTIONS, url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
    };
    let resp = preflight(format!("{}/admin/v1/keys", gw.admin_url), ops).await.unwrap();
    let h = resp.headers();
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    assert_eq!(resp.status(), 200);
    assert_eq!(get("access-control-allow-origin"), ops);
    assert!(get("access-control-allow-methods").contains("post"), "{h:?}");
    assert!(get("access-control-allow-headers").contains("authorization"), "{h:?}");
    assert!(!h.contains_key("access-control-allow-credentials"), "{h:?}");
    assert!(get("vary").contains("origin"), "{h:?}");

    let resp = gw
        .http
        .get(format!("{}/admin/v1/orgs", gw.admin_url))
        .bearer_auth(root(&gw))
        .header("origin", ops)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert_eq!(h.get("access-control-allow-origin").unwrap(), ops);
    assert!(h.get("access-control-expose-headers").unwrap().to_str().unwrap().contains("x-request-id"));
    assert_eq!(h.get("x-frame-options").unwrap(), "DENY", "the plane's own headers stay");

    for (url, origin) in [
        (format!("{}/admin/v1/keys", gw.admin_url), "https://evil.example"),
        (format!("{}/admin/v1/keys", gw.admin_url), "https://ops.example.com.evil.example"),
        (format!("{}/admin/v1/keys", gw.admin_url), "null"),
        (format!("{}/v1/chat/completions", gw.data_url), "https://ops.example.com"),
    ] {
        let resp = preflight(url.clone(), origin).await.unwrap();
        assert!(!resp.headers().contains_key("access-control-allow-origin"), "{url} {origin}: {:?}", resp.headers());
    }
}
