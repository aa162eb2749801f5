//! The generated authorization matrix: every admin route in the route table x every role x
//! own org / other org, asserting allow (2xx), deny (403) or not-found (404) exactly as the
//! permission matrix says, and that every decision reached the audit store. Runs on SQLite and
//! on PostgreSQL.

use std::collections::{HashMap, HashSet};

use gatehouse_admin::rbac::{Role, allows};
use gatehouse_admin::routes::{ROUTES, RouteSpec, Scope};
use gatehouse_testkit::TestGateway;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{call, gateway};

struct Tenant {
    id: String,
    name: String,
    project: String,
    user: String,
    key: String,
}

async fn ok(gw: &TestGateway, method: Method, path: &str, body: Value) -> Value {
    let (st, v) = call(gw, gw.admin_token.as_deref().unwrap(), method, path, Some(body)).await;
    assert!((200..300).contains(&st), "setup {path}: {st} {v}");
    v
}

static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
}

async fn fresh_member(gw: &TestGateway, org: &str) -> String {
    let body = json!({"email": format!("{}@example.com", unique("m")), "name": "M", "role": "viewer"});
    ok(gw, Method::POST, &format!("/admin/v1/orgs/{org}/members"), body).await["user_id"].as_str().unwrap().to_owned()
}

async fn fresh_key(gw: &TestGateway, t: &Tenant) -> String {
    let body = json!({"name": unique("k"), "org": t.name, "project": "p"});
    ok(gw, Method::POST, "/admin/v1/keys", body).await["id"].as_str().unwrap().to_owned()
}

async fn fresh_token(gw: &TestGateway, t: &Tenant) -> String {
    let body = json!({"name": unique("t"), "role": "viewer", "org": t.id});
    ok(gw, Method::POST, "/admin/v1/tokens", body).await["id"].as_str().unwrap().to_owned()
}

async fn fresh_credential(gw: &TestGateway, t: &Tenant) -> String {
    let body = json!({"provider": "mock", "secret": "sk-matrix-credential", "org": t.id});
    ok(gw, Method::POST, "/admin/v1/credentials", body).await["id"].as_str().unwrap().to_owned()
}

async fn fresh_mcp_server(gw: &TestGateway, t: &Tenant) -> String {
    let body = json!({"name": unique("s"), "url": "https://mcp.example.com/mcp", "org": t.id});
    ok(gw, Method::POST, "/admin/v1/mcp/servers", body).await["id"].as_str().unwrap().to_owned()
}

async fn fresh_webhook(gw: &TestGateway, t: &Tenant) -> String {
    let body = json!({"name": unique("w"), "kind": "slack", "url": "https://hooks.example.com/x", "events": ["*"],
                      "org": t.id});
    ok(gw, Method::POST, "/admin/v1/webhooks", body).await["id"].as_str().unwrap().to_owned()
}

async fn fresh_capability(gw: &TestGateway, t: &Tenant) -> String {
    let body = json!({"name": unique("c"), "org": t.name, "project": "p", "scopes": ["chat:*"],
                      "expires_in_seconds": 600});
    ok(gw, Method::POST, "/admin/v1/capabilities", body).await["id"].as_str().unwrap().to_owned()
}

async fn tenant(gw: &TestGateway, name: &str) -> Tenant {
    let id = ok(gw, Method::POST, "/admin/v1/orgs", json!({"name": name})).await["id"].as_str().unwrap().to_owned();
    let project = ok(gw, Method::POST, &format!("/admin/v1/orgs/{id}/projects"), json!({"name": "p"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let user = fresh_member(gw, &id).await;
    let mut t = Tenant { id, name: name.to_owned(), project, user, key: String::new() };
    t.key = fresh_key(gw, &t).await;
    t
}

/// The request for one route against one tenant, made by `caller`: path, body.
async fn request(gw: &TestGateway, spec: &RouteSpec, t: &Tenant, caller: &str) -> (String, Option<Value>) {
    // a session route acts on one of the caller's own console sessions
    if spec.path == "/admin/v1/sessions/{id}/revoke" {
        let id = crate::console::signed_in(gw, caller).await.session_id().await;
        return (spec.path.replace("{id}", &id), None);
    }
    // routes that consume their object get a fresh one each time
    let user = if spec.method == "DELETE" { fresh_member(gw, &t.id).await } else { t.user.clone() };
    let is_token_route = spec.path.starts_with("/admin/v1/tokens/");
    let is_webhook_route = spec.path.starts_with("/admin/v1/webhooks");
    let is_capability_route = spec.path.starts_with("/admin/v1/capabilit");
    let is_credential_route = spec.path.starts_with("/admin/v1/credentials");
    let is_mcp_server_route = spec.path.starts_with("/admin/v1/mcp/servers");
    let consumes_key =
        !is_token_route && !is_capability_route && (spec.path.ends_with("/revoke") || spec.path.ends_with("/rotate"));
    let key = if is_capability_route && spec.path.contains("{id}") {
        fresh_capability(gw, t).await
    } else if consumes_key {
        fresh_key(gw, t).await
    } else if is_webhook_route && spec.path.contains("{id}") {
        fresh_webhook(gw, t).await
    } else if is_credential_route && spec.path.contains("{id}") {
        fresh_credential(gw, t).await
    } else if is_mcp_server_route && spec.path.contains("{id}") {
        fresh_mcp_server(gw, t).await
    } else if is_token_route {
        fresh_token(gw, t).await
    } else {
        t.key.clone()
    };
    let mut path = spec
        .path
        .replace("{org}", &t.id)
        .replace("{project}", &t.project)
        .replace("{user}", &user)
        .replace("{id}", &key);
    if spec.path.starts_with("/admin/v1/keys") && spec.method != "POST" || consumes_key {
        path.push_str(&format!("?org={}", t.name));
    }
    if is_capability_route && spec.method != "POST" || spec.path == "/admin/v1/capabilities/{id}/revoke" {
        path.push_str(&format!("?org={}", t.name));
    }
    if (is_webhook_route || is_credential_route || is_mcp_server_route) && spec.method != "POST" {
        path.push_str(&format!("?org={}", t.id));
    }
    let body = match (spec.method, spec.path) {
        ("POST", "/admin/v1/orgs") => Some(json!({"name": unique("org")})),
        // renaming keeps the name: later rows address orgs by name
        ("PATCH", "/admin/v1/orgs/{org}") => Some(json!({"name": t.name})),
        ("POST", "/admin/v1/orgs/{org}/projects") => Some(json!({"name": unique("proj")})),
        ("PATCH", "/admin/v1/orgs/{org}/projects/{project}") => Some(json!({"name": "p"})),
        ("POST", "/admin/v1/orgs/{org}/members") => {
            Some(json!({"email": format!("{}@example.com", unique("n")), "name": "N", "role": "viewer"}))
        }
        ("PATCH", "/admin/v1/orgs/{org}/members/{user}") => Some(json!({"name": "Renamed"})),
        ("POST", "/admin/v1/orgs/{org}/projects/{project}/members") => Some(json!({"user_id": t.user})),
        ("POST", "/admin/v1/tokens") => Some(json!({"name": "t", "role": "viewer", "org": t.id})),
        ("POST", "/admin/v1/keys") => Some(json!({"name": unique("k"), "org": t.name, "project": "p"})),
        ("POST", "/admin/v1/keys/{id}/rotate") => Some(json!({})),
        ("POST", "/admin/v1/capabilities") => Some(json!({"name": unique("c"), "org": t.name, "project": "p",
            "scopes": ["chat:*"], "models": ["mock"], "expires_in_seconds": 600, "budget_usd": "2.5", "rpm": 10})),
        ("POST", "/admin/v1/capability-keys/rotate") => Some(json!({"org": t.name})),
        ("PUT", "/admin/v1/orgs/{org}/guardrails") | ("PUT", "/admin/v1/orgs/{org}/projects/{project}/guardrails") => {
            Some(json!({"detectors": {"pii": {"input": "redact"}}, "custom": [{"name": "codes", "keywords": ["x-1"]}]}))
        }
        ("PUT", "/admin/v1/orgs/{org}/routing") | ("PUT", "/admin/v1/orgs/{org}/projects/{project}/routing") => {
            Some(json!({"providers": ["mock"], "pins": {"mock": "mock"}}))
        }
        ("PUT", "/admin/v1/orgs/{org}/limits")
        | ("PUT", "/admin/v1/orgs/{org}/projects/{project}/limits")
        | ("PUT", "/admin/v1/keys/{id}/limits") => {
            Some(json!({"rpm": 100_000, "budgets": [{"period": "monthly", "usd": 1000, "alert_at": [80]}]}))
        }
        ("POST", "/admin/v1/credentials") => {
            Some(json!({"provider": "mock", "secret": "sk-matrix-credential", "org": t.id}))
        }
        ("POST", "/admin/v1/mcp/servers") => Some(
            json!({"name": unique("s"), "url": "https://mcp.example.com/mcp", "org": t.id, "credential": "Bearer x"}),
        ),
        ("PUT", "/admin/v1/orgs/{org}/mcp") | ("PUT", "/admin/v1/orgs/{org}/projects/{project}/mcp") => {
            Some(json!({"tools": {"deny": ["*/delete_*"]}, "timeouts": [{"tools": "*", "timeout_ms": 5000}]}))
        }
        ("POST", "/admin/v1/webhooks") => Some(json!({"name": unique("w"), "kind": "discord",
            "url": "https://hooks.example.com/y", "events": ["key.*"], "org": t.id})),
        _ => None,
    };
    (path, body)
}

/// What the permission matrix says this call must answer: `None` = allowed (2xx).
fn expected(spec: &RouteSpec, role: Role, own: bool) -> Option<u16> {
    if role == Role::PlatformAdmin {
        return None;
    }
    match spec.scope {
        Scope::Platform => Some(403),
        Scope::Own => (!allows(role, spec.permission)).then_some(403),
        Scope::Org if !own => Some(404),
        Scope::Org => (!allows(role, spec.permission)).then_some(403),
    }
}

async fn run_matrix(gw: TestGateway) {
    let root = gw.admin_token.clone().unwrap();
    let acme = tenant(&gw, "acme").await;
    let globex = tenant(&gw, "globex").await;
    let mut tokens: HashMap<Role, String> = HashMap::new();
    tokens.insert(Role::PlatformAdmin, root.clone());
    for role in [Role::Viewer, Role::Member, Role::OrgAdmin] {
        let v = ok(
            &gw,
            Method::POST,
            "/admin/v1/tokens",
            json!({"name": role.as_str(), "role": role.as_str(), "org": acme.id}),
        )
        .await;
        tokens.insert(role, v["token"].as_str().unwrap().to_owned());
    }

    let mut outcomes: HashSet<(&str, &str)> = HashSet::new();
    let mut checked = 0;
    for spec in ROUTES {
        for role in Role::ALL {
            for (target, own) in [(&acme, true), (&globex, false)] {
                let (path, body) = request(&gw, spec, target, &tokens[&role]).await;
                let method = Method::from_bytes(spec.method.as_bytes()).unwrap();
                let (status, v) = call(&gw, &tokens[&role], method, &path, body).await;
                let want = expected(spec, role, own);
                match want {
                    None => assert!(
                        (200..300).contains(&status),
                        "{} {} as {role:?} (own={own}): {status} {v}",
                        spec.method,
                        spec.path
                    ),
                    Some(code) => {
                        assert_eq!(status, code, "{} {} as {role:?} (own={own}): {v}", spec.method, spec.path)
                    }
                }
                outcomes.insert((spec.action.as_str(), if want.is_none() { "allowed" } else { "denied" }));
                checked += 1;
            }
        }
    }
    assert_eq!(checked, ROUTES.len() * 4 * 2);

    // every decision above is in the audit store under the route's action
    let (_, audit) = call(&gw, &root, Method::GET, "/admin/v1/audit?limit=1000", None).await;
    let stored: HashSet<(String, String)> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap().to_owned(), e["outcome"].as_str().unwrap().to_owned()))
        .collect();
    for (action, outcome) in outcomes {
        assert!(stored.contains(&(action.to_owned(), outcome.to_owned())), "no {outcome} audit row for {action}");
    }
}

#[tokio::test]
async fn every_route_role_and_tenant_on_sqlite() {
    run_matrix(gateway().server(UNTHROTTLED).config(CONSOLE).spawn().await).await;
}

/// Session routes need a console session per call: each role's one token signs in many times.
const CONSOLE: &str = "[console]\ntoken_sign_in = \"always\"";

/// The matrix makes far more admin writes a minute than the default rate allows.
const UNTHROTTLED: &str = "admin_mutations_per_minute = 100000\nadmin_requests_per_minute_per_source = 1000000";

#[tokio::test]
async fn every_route_role_and_tenant_on_postgres() {
    let Some(url) = crate::postgres::fresh_schema_url() else { return };
    run_matrix(gateway().server(UNTHROTTLED).config(CONSOLE).env("GATEHOUSE_DATABASE_URL", &url).spawn().await).await;
}
