//! The audit trail end to end: a busy run exports and verifies offline with the CLI, tenant
//! scoping of exports, a crash (SIGKILL) under sustained writes on SQLite and PostgreSQL, and
//! canaries that must never reach the trail, the logs or the metrics.

use std::collections::HashSet;
use std::time::Duration;

use gatehouse_testkit::{FakeProvider, REPLY_CANARY, TestGateway};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{PROVIDER_SECRET, as_root, call, gateway, mint, new_org, root, upstream_config};

const AUDIT: &str = "[audit]\ncheckpoint_every_events = 20\ncheckpoint_interval_ms = 200\n";

/// Runs the `gatehouse` CLI; returns (exit ok, stdout).
async fn cli(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        eprintln!("gatehouse {args:?}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    }
    (out.status.success(), stdout)
}

/// The NDJSON export as the given admin token sees it.
async fn export(gw: &TestGateway, token: &str, query: &str) -> (u16, String) {
    let resp =
        gw.http.get(format!("{}/admin/v1/audit/export{query}", gw.admin_url)).bearer_auth(token).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn records(ndjson: &str) -> Vec<Value> {
    ndjson.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).filter(|v| v["type"] == "record").collect()
}

async fn vkey(gw: &TestGateway) -> String {
    let (st, v) = as_root(gw, Method::GET, "/admin/v1/audit/key", None).await;
    assert_eq!(st, 200, "{v}");
    v["key"].as_str().unwrap().to_owned()
}

/// Chat requests from `n` concurrent clients, `each` requests each.
async fn load(gw: &TestGateway, key: &str, n: usize, each: usize) {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (http, url, key) = (gw.http.clone(), gw.data_url.clone(), key.to_owned());
        tasks.push(tokio::spawn(async move {
            for _ in 0..each {
                let r = http
                    .post(format!("{url}/v1/chat/completions"))
                    .bearer_auth(&key)
                    .json(&json!({"model": "mock", "messages": [{"role": "user", "content": "hi"}]}))
                    .send()
                    .await;
                assert!(r.is_ok_and(|r| r.status() == 200));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn a_busy_run_exports_and_verifies_offline_with_the_cli() {
    let gw = gateway().config(AUDIT).spawn().await;
    let key = gw.key().to_owned();
    load(&gw, &key, 8, 15).await;
    for _ in 0..5 {
        assert_eq!(gw.chat("gth_not_a_key", "mock").await.status(), 401);
    }
    new_org(&gw, "acme").await;
    let vkey = vkey(&gw).await;
    assert!(vkey.starts_with("gatehouse-audit+"));

    // export through the CLI, verify the file offline against the pinned key
    let file = gw.data_path().join("export.ndjson");
    let token = root(&gw);
    let (ok, _) = cli(
        &["audit", "export", "--admin-url", &gw.admin_url, "-f", file.to_str().unwrap()],
        &[("GATEHOUSE_ADMIN_TOKEN", &token)],
    )
    .await;
    assert!(ok);
    let text = std::fs::read_to_string(&file).unwrap();
    let recs = records(&text);
    let actions: Vec<&str> = recs.iter().map(|r| r["event"]["action"].as_str().unwrap()).collect();
    assert_eq!(actions.iter().filter(|a| **a == "request.allowed").count(), 120, "every allowed request");
    assert_eq!(actions.iter().filter(|a| **a == "auth.api_key").count(), 5, "every refusal");
    assert!(actions.contains(&"org.create") && actions.contains(&"system.start"));
    let allowed = recs.iter().find(|r| r["event"]["action"] == "request.allowed").unwrap();
    for field in ["org_id", "project_id", "actor", "request_id", "model", "latency_us", "prompt_tokens"] {
        assert!(!allowed["event"][field].is_null(), "allowed request events carry {field}: {allowed}");
    }
    let path = file.to_str().unwrap();
    let (ok, out) = cli(&["audit", "verify", "--file", path, "--key", &vkey, "-o", "json"], &[]).await;
    assert!(ok, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], true);
    assert!(report["records"].as_u64().unwrap() >= 127, "{report}");
    assert_eq!((report["unsigned"].as_u64(), report["export"]["filtered"].as_bool()), (Some(0), Some(false)));
    // in words: what the signed manifest proved, and what no export can
    let (ok, out) = cli(&["audit", "verify", "--file", path, "--key", &vkey], &[]).await;
    assert!(ok && out.contains("(signed manifest): whole chains") && out.contains("NOT proven"), "{out}");

    // one changed byte in the file is found and named
    let tampered = gw.data_path().join("tampered.ndjson");
    std::fs::write(&tampered, text.replacen("\"status\":200", "\"status\":201", 1)).unwrap();
    let (ok, out) = cli(&["audit", "verify", "--file", tampered.to_str().unwrap(), "--key", &vkey], &[]).await;
    assert!(!ok);
    assert!(out.starts_with("BROKEN: chain org/") && out.contains("modified"), "{out}");
    // a key that is not the deployment's: checkpoints do not verify
    let other = gatehouse_security::checkpoint::CheckpointSigner::from_seed(gatehouse_audit::KEY_NAME, &[3; 32])
        .unwrap()
        .verifier()
        .to_vkey();
    let (ok, out) = cli(&["audit", "verify", "--file", path, "--key", &other], &[]).await;
    assert!(!ok && out.contains("manifest_forged"), "{out}");

    // after a graceful stop the store verifies too, with every chain signed to its end
    let config = gw.config_path.clone();
    let dir = gw.stop().await;
    let (ok, out) = cli(&["audit", "verify", "--config", config.to_str().unwrap(), "-o", "json"], &[]).await;
    assert!(ok, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["unsigned"], 0, "{report}");
    drop(dir);
}

#[tokio::test]
async fn exports_are_tenant_scoped_filtered_and_audited() {
    let gw = gateway().spawn().await;
    let acme = new_org(&gw, "acme").await;
    let other = new_org(&gw, "other").await;
    let (_, t) = mint(&gw, &root(&gw), "org_admin", Some(&acme)).await;
    let admin = t["token"].as_str().unwrap().to_owned();
    call(&gw, &admin, Method::POST, &format!("/admin/v1/orgs/{acme}/projects"), Some(json!({"name": "web"}))).await;

    let (st, text) = export(&gw, &admin, "").await;
    assert_eq!(st, 200);
    let recs = records(&text);
    assert!(!recs.is_empty());
    assert!(recs.iter().all(|r| r["chain"] == format!("org/{acme}")), "an org admin exports its own org only");
    assert_eq!(export(&gw, &admin, &format!("?org={other}")).await.0, 404, "another tenant's trail does not exist");
    assert_eq!(export(&gw, &admin, "?action=nope").await.0, 400);
    assert_eq!(export(&gw, &admin, "?from=yesterday").await.0, 400);
    assert_eq!(export(&gw, &admin, "?format=xml").await.0, 400);

    let (st, csv) = export(&gw, &admin, "?format=csv&action=project.create").await;
    assert_eq!(st, 200);
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with("chain,seq,at,action"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 1, "{csv}");
    assert!(rows[0].contains(",project.create,"));

    // the exports themselves are in the trail, under the org they read
    let (_, list) = call(&gw, &admin, Method::GET, "/admin/v1/audit?action=audit.export", None).await;
    let exports = list["data"].as_array().unwrap();
    assert!(exports.len() >= 2, "{list}");
    assert!(exports.iter().all(|e| e["org_id"] == acme.as_str()));
    // a platform admin sees every chain, or one by ?org=
    let (st, all) = export(&gw, &root(&gw), "").await;
    assert_eq!(st, 200);
    let chains: HashSet<String> = records(&all).iter().map(|r| r["chain"].as_str().unwrap().to_owned()).collect();
    assert!(chains.contains("platform") && chains.contains(&format!("org/{acme}")), "{chains:?}");
}

/// Sustained acknowledged admin writes and data-plane traffic, then SIGKILL: after a
/// restart the chain verifies and every acknowledged event is there.
async fn crash_under_load(builder: impl Fn() -> gatehouse_testkit::GatewayBuilder, pg_env: &[(&str, &str)]) {
    let gw = builder().config(AUDIT).spawn().await;
    let token = root(&gw);
    assert!(gw.admin_token.is_some());
    let org = new_org(&gw, "acme").await;
    let key = gw.key().to_owned();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (http, url, token, org, stop, count) =
            (gw.http.clone(), gw.admin_url.clone(), token.clone(), org.clone(), stop.clone(), count.clone());
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let r = http
                    .post(format!("{url}/admin/v1/orgs/{org}/projects"))
                    .bearer_auth(&token)
                    .json(&json!({"name": format!("p{w}-{i}")}))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 201 => {
                        acked.push(r.headers()["x-request-id"].to_str().unwrap().to_owned());
                        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    // the process died mid-request: not acknowledged
                    Err(_) => break,
                    Ok(r) => {
                        // any other answer before the kill is worth seeing when the load is thin
                        if !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            eprintln!("crash test writer {w}: {} before the kill", r.status());
                        }
                        break;
                    }
                }
            }
            acked
        }));
    }
    let traffic = {
        let (http, url, key, stop) = (gw.http.clone(), gw.data_url.clone(), key.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = http
                    .post(format!("{url}/v1/chat/completions"))
                    .bearer_auth(&key)
                    .json(&json!({"model": "mock", "messages": [{"role": "user", "content": "hi"}]}))
                    .send()
                    .await;
            }
        })
    };
    // Kill under sustained load: after 1.5 s and at least 40 acknowledged writes (a machine
    // busy with the rest of the suite may need longer than 1.5 s to get there).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    gatehouse_testkit::eventually(Duration::from_secs(20), || async {
        count.load(std::sync::atomic::Ordering::Relaxed) >= 40
    })
    .await;
    let dir = gw.kill().await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    traffic.await.unwrap();
    assert!(acked.len() > 20, "the load ran ({} acknowledged writes)", acked.len());
    eprintln!("crash test: {} acknowledged writes before SIGKILL", acked.len());

    // restart on the same store: whatever was spooled is replayed first
    let gw = builder().config(AUDIT).data_dir(dir).spawn().await;
    let (st, text) = export(&gw, &token, "").await;
    assert_eq!(st, 200);
    let stored: HashSet<String> =
        records(&text).iter().filter_map(|r| r["event"]["request_id"].as_str().map(str::to_owned)).collect();
    let lost: Vec<_> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(lost.is_empty(), "{} acknowledged events lost: {lost:?}", lost.len());
    let config = gw.config_path.clone();
    let _dir = gw.stop().await;
    let (ok, out) = cli(&["audit", "verify", "--config", config.to_str().unwrap()], pg_env).await;
    assert!(ok, "the chain is intact after the crash: {out}");
}

/// Admin writes are rate limited per token; this test wants sustained writes.
const UNLIMITED: &str = "admin_mutations_per_minute = 1000000\nadmin_requests_per_minute_per_source = 10000000";

#[tokio::test]
async fn a_crash_loses_no_acknowledged_event_on_sqlite() {
    crash_under_load(|| gateway().server(UNLIMITED), &[]).await;
}

#[tokio::test]
async fn a_crash_loses_no_acknowledged_event_on_postgres() {
    let Some(url) = crate::postgres::fresh_schema_url() else { return };
    let env = [("GATEHOUSE_DATABASE_URL", url.as_str())];
    crash_under_load(|| gateway().server(UNLIMITED).env("GATEHOUSE_DATABASE_URL", &url), &env).await;
}

const PROMPT_CANARY: &str = "prompt-canary-9c2f";

#[tokio::test]
async fn canaries_never_reach_the_trail_logs_or_metrics() {
    let fake = FakeProvider::spawn().await;
    let (hook_url, seen) = crate::webhooks::receiver().await;
    let gw = gateway()
        .config(&upstream_config(&fake))
        .config("[webhooks]\nallow_private_targets = [\"127.0.0.1/32\"]\nretry_base_ms = 50\n")
        .env("FAKE_UPSTREAM_KEY", PROVIDER_SECRET)
        .spawn()
        .await;
    let key = gw.key().to_owned();
    // every event of the org and of the platform also goes out as a webhook
    for org in [Some("default"), None] {
        let mut body = json!({"name": "all", "kind": "generic", "url": format!("{hook_url}/generic"), "events": ["*"]});
        if let Some(o) = org {
            body["org"] = json!(o);
        }
        assert_eq!(as_root(&gw, Method::POST, "/admin/v1/webhooks", Some(body)).await.0, 201);
    }
    let msg = json!([{"role": "user", "content": format!("my secret is {PROMPT_CANARY}")},
                     {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function",
                      "function": {"name": "lookup", "arguments": format!("{{\"q\":\"{PROMPT_CANARY}\"}}")}}]},
                     {"role": "tool", "tool_call_id": "c1", "content": PROMPT_CANARY}]);
    let chat = |stream: bool, model: &str| json!({"model": model, "messages": msg, "stream": stream});
    // allowed: JSON and streamed, upstream and mock, chat and embeddings
    for body in [chat(false, "fake-model"), chat(true, "fake-model"), chat(false, "mock")] {
        let r = gw.post("/v1/chat/completions", Some(&key), &body).await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        assert!(text.contains(REPLY_CANARY.trim()) || body["model"] == "mock", "{text}");
    }
    let emb = json!({"model": "fake-embed", "input": [PROMPT_CANARY]});
    assert_eq!(gw.post("/v1/embeddings", Some(&key), &emb).await.status(), 200);
    // refused: bad JSON with the canary, an unknown model named after it, a credential like it
    let bad = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.data_url))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(format!("{{\"model\": \"{PROMPT_CANARY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(gw.post("/v1/chat/completions", Some(&key), &chat(false, PROMPT_CANARY)).await.status(), 404);
    let wrong_key = format!("gth_{PROMPT_CANARY}");
    assert_eq!(gw.post("/v1/chat/completions", Some(&wrong_key), &chat(false, "mock")).await.status(), 401);
    // the control plane: a body and a token carrying it
    as_root(&gw, Method::POST, "/admin/v1/orgs", Some(json!({"name": PROMPT_CANARY, "x": 1}))).await;
    call(&gw, &format!("gtha_{PROMPT_CANARY}"), Method::GET, "/admin/v1/orgs", None).await;

    let (_, ndjson) = export(&gw, &root(&gw), "").await;
    let delivered = gatehouse_testkit::eventually(Duration::from_secs(30), || async {
        let hits = seen.hits.lock().await;
        hits.iter().any(|h| h.2.contains("\"request.allowed\""))
            && hits.iter().any(|h| h.2.contains("\"auth.api_key\""))
    })
    .await;
    assert!(delivered, "request events reached the webhook");
    let hooks: String = seen.hits.lock().await.iter().map(|h| h.2.clone()).collect();
    let (_, csv) = export(&gw, &root(&gw), "?format=csv").await;
    let metrics = gw.http.get(format!("{}/metrics", gw.admin_url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("gatehouse_audit_events_total"), "the writer reports itself");
    let data_dir = gw.data_path().join("data");
    let admin_token = root(&gw);
    // after a graceful stop the log is complete
    let dir = gw.stop().await;
    let logs = std::fs::read_to_string(dir.path().join("gatehouse.log")).unwrap();
    assert!(logs.contains("gatehouse stopped") && logs.contains("request finished"));
    // everything on disk: the database, its WAL, any spool
    let mut disk = Vec::new();
    for entry in std::fs::read_dir(&data_dir).unwrap() {
        disk.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let disk = String::from_utf8_lossy(&disk).into_owned();
    let canaries = [PROMPT_CANARY, REPLY_CANARY.trim(), PROVIDER_SECRET, key.as_str(), admin_token.as_str()];
    let places = [
        ("export", &ndjson),
        ("csv", &csv),
        ("metrics", &metrics),
        ("logs", &logs),
        ("disk", &disk),
        ("webhook payloads", &hooks),
    ];
    for (place, text) in places {
        for c in canaries {
            assert!(!text.contains(c), "{c} reached the {place}");
        }
    }
    assert!(records(&ndjson).len() >= 10);
}

/// At the most verbose log level, credential headers still never print: both planes mark
/// `Authorization`, `Proxy-Authorization`, `Cookie`, `x-api-key` and `api-key` sensitive at their edge,
/// before any layer or handler could log them.
#[tokio::test]
async fn credential_headers_never_reach_trace_level_logs() {
    const CANARY: &str = "credential-canary-4d1e";
    let gw = gateway().env("GATEHOUSE_LOG", "trace").spawn().await;
    let (key, admin) = (gw.key().to_owned(), root(&gw));
    let chat = json!({"model": "mock", "messages": [{"role": "user", "content": "hi"}]});
    let cookie = format!("session={CANARY}");
    let data = format!("{}/v1/chat/completions", gw.data_url);
    let orgs = format!("{}/admin/v1/orgs", gw.admin_url);
    let requests = [
        gw.http.post(&data).bearer_auth(&key).header("cookie", &cookie).json(&chat),
        gw.http.post(&data).bearer_auth(&key).header("proxy-authorization", format!("Basic {CANARY}")).json(&chat),
        gw.http.post(&data).bearer_auth(format!("gth_{CANARY}")).json(&chat),
        gw.http.post(&data).header("x-api-key", CANARY).json(&chat),
        gw.http.post(&data).header("x-api-key", &key).bearer_auth(&key).json(&chat),
        gw.http.post(&data).header("api-key", CANARY).json(&chat),
        gw.http.get(&orgs).bearer_auth(&admin).header("cookie", &cookie),
        gw.http.get(&orgs).bearer_auth(format!("gtha_{CANARY}")),
    ];
    let mut statuses = Vec::new();
    for r in requests {
        statuses.push(r.send().await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 401, 401, 400, 401, 200, 401]);
    let dir = gw.stop().await;
    let logs = std::fs::read_to_string(dir.path().join("gatehouse.log")).unwrap();
    assert!(logs.contains("started processing request"), "debug output was on");
    for secret in [CANARY, key.as_str(), admin.as_str()] {
        assert!(!logs.contains(secret), "a credential reached the trace-level log");
    }
}

/// What a fake collector received: (content type, body) per export.
type Collected = std::sync::Arc<tokio::sync::Mutex<Vec<(String, Vec<u8>)>>>;

#[tokio::test]
async fn otlp_spans_carry_allow_listed_fields_only() {
    // a collector that keeps what it is sent
    let bodies: Collected = Collected::default();
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            axum::routing::post(
                |axum::extract::State(b): axum::extract::State<Collected>,
                 h: axum::http::HeaderMap,
                 body: axum::body::Bytes| async move {
                    let ct = h.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                    b.lock().await.push((ct, body.to_vec()));
                },
            ),
        )
        .with_state(bodies.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let telemetry =
        format!("[telemetry]\notlp_endpoint = \"http://{addr}/v1/traces\"\notlp_export_interval_ms = 200\n");
    let gw = gateway().config(&telemetry).spawn().await;
    let key = gw.key().to_owned();
    let body = json!({"model": "mock", "messages": [{"role": "user", "content": PROMPT_CANARY}]});
    let resp = gw.post("/v1/chat/completions", Some(&key), &body).await;
    assert_eq!(resp.status(), 200);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(gw.post("/v1/chat/completions", Some("gth_wrong"), &body).await.status(), 401);

    let arrived = gatehouse_testkit::eventually(Duration::from_secs(30), || async {
        let b = bodies.lock().await;
        b.iter().any(|(_, raw)| String::from_utf8_lossy(raw).contains(&request_id))
    })
    .await;
    assert!(arrived, "the request's span reached the collector");
    let b = bodies.lock().await;
    assert!(b.iter().all(|(ct, _)| ct == "application/x-protobuf"));
    let all: Vec<u8> = b.iter().flat_map(|(_, raw)| raw.clone()).collect();
    let text = String::from_utf8_lossy(&all);
    for field in ["gatehouse.request_id", "gatehouse.org_id", "gen_ai.request.model", "gen_ai.usage.input_tokens"] {
        assert!(text.contains(field), "spans carry {field}");
    }
    assert!(text.contains("unauthenticated") || text.contains("invalid_api_key"), "refusals are traced by code");
    for canary in [PROMPT_CANARY, key.as_str(), "gth_wrong"] {
        assert!(!text.contains(canary), "{canary} reached a span");
    }
    drop(b);
    // a graceful stop flushes the exporter and exits cleanly
    let dir = gw.stop().await;
    let logs = std::fs::read_to_string(dir.path().join("gatehouse.log")).unwrap();
    assert!(logs.contains("gatehouse stopped"), "{logs}");
}

/// Every path and query parameter of the control plane (enumerated from its OpenAPI document)
/// and the data plane's model path, each given a live API key, a live admin token and a 4 KiB
/// credential-shaped string: an id that is not an id is 404, nothing is echoed, and none of
/// them reaches the trail, its exports, the logs or the database.
#[tokio::test]
async fn credentials_pasted_into_any_path_or_query_parameter_are_never_recorded() {
    let gw = gateway().server(UNLIMITED).spawn().await;
    let root = root(&gw);
    let acme = new_org(&gw, "acme").await;
    let (_, minted) = mint(&gw, &root, "org_admin", Some(&acme)).await;
    let admin_token = minted["token"].as_str().unwrap().to_owned();
    let key = gw.key().to_owned();
    let long = format!("gth_{}", "Q7".repeat(2048));
    let canaries = [key.as_str(), admin_token.as_str(), long.as_str()];
    // some id that exists nowhere, for the parameters not under test
    let nobody = "0190a5c1-0000-7000-8000-000000000000";

    let (_, doc) = call(&gw, &root, Method::GET, "/admin/v1/openapi.json", None).await;
    let mut sent = 0;
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let method: Method = method.to_uppercase().parse().unwrap();
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let path_params: Vec<&str> =
                params.iter().filter(|p| p["in"] == "path").map(|p| p["name"].as_str().unwrap()).collect();
            for p in &params {
                let (name, place) = (p["name"].as_str().unwrap(), p["in"].as_str().unwrap());
                for canary in canaries {
                    let mut url = template.clone();
                    for other in &path_params {
                        let value = if place == "path" && *other == name { canary } else { nobody };
                        url = url.replace(&format!("{{{other}}}"), value);
                    }
                    if place == "query" {
                        url = format!("{url}?{name}={canary}");
                    }
                    let mut rb = gw.http.request(method.clone(), format!("{}{url}", gw.admin_url)).bearer_auth(&root);
                    if matches!(method, Method::POST | Method::PUT | Method::PATCH) {
                        rb = rb.json(&json!({}));
                    }
                    let resp = rb.send().await.unwrap();
                    let status = resp.status().as_u16();
                    let body = resp.text().await.unwrap();
                    assert!(status < 500, "{method} {template} ({place} {name}): {status} {body}");
                    if place == "path" {
                        assert_eq!(status, 404, "{method} {template} ({name}): {body}");
                    }
                    assert!(!body.contains(canary), "{method} {template} echoed its {place} parameter {name}");
                    sent += 1;
                }
            }
        }
    }
    assert!(sent >= 150, "only {sent} requests: the OpenAPI document lost its parameters?");
    for canary in canaries {
        let resp = gw.get(&format!("/v1/models/{canary}"), Some(&key)).await;
        assert_eq!(resp.status(), 404);
        assert!(!resp.text().await.unwrap().contains(canary));
    }

    let (_, ndjson) = export(&gw, &root, "").await;
    assert!(records(&ndjson).iter().any(|r| r["event"]["code"] == "not_found"), "the refusals are in the trail");
    let (_, csv) = export(&gw, &root, "?format=csv").await;
    let data_dir = gw.data_path().join("data");
    let dir = gw.stop().await;
    let logs = std::fs::read_to_string(dir.path().join("gatehouse.log")).unwrap();
    let mut disk = Vec::new();
    for entry in std::fs::read_dir(&data_dir).unwrap() {
        disk.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let disk = String::from_utf8_lossy(&disk).into_owned();
    for (place, text) in [("export", &ndjson), ("csv", &csv), ("logs", &logs), ("disk", &disk)] {
        for canary in canaries {
            // the secret part, not the public prefix (a key's 4-character hint is stored by design)
            let secret = &canary[12..40];
            assert!(!text.contains(secret), "a pasted credential reached the {place}");
        }
    }
}

#[tokio::test]
async fn chains_are_verified_on_demand_and_on_schedule_and_a_broken_one_is_raised() {
    let gw = gateway()
        .config("[audit]\ncheckpoint_every_events = 5\ncheckpoint_interval_ms = 200\nverify_interval_ms = 1000\n")
        .spawn()
        .await;
    let org = new_org(&gw, "acme").await;
    let chain = format!("org/{org}");
    let (st, _) =
        as_root(&gw, Method::POST, &format!("/admin/v1/orgs/{org}/projects"), Some(json!({"name": "web"}))).await;
    assert_eq!(st, 201);
    let (_, key) = gw.create_key(json!({"name": "k", "org": "acme", "project": "web"})).await;
    for _ in 0..3 {
        assert_eq!(gw.chat(&key, "mock").await.status(), 200);
    }
    let verify = |token: String, query: &'static str| {
        let gw = &gw;
        async move { call(gw, &token, Method::POST, &format!("/admin/v1/audit/verify{query}"), None).await }
    };
    let by_chain = |v: &Value| -> std::collections::HashMap<String, Value> {
        v["chains"].as_array().unwrap().iter().map(|c| (c["chain"].as_str().unwrap().to_owned(), c.clone())).collect()
    };

    // intact: every chain for the platform, only its own for an org's operator
    let (st, v) = verify(root(&gw), "").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["ok"], true, "{v}");
    let all = by_chain(&v);
    assert!(all["platform"]["ok"].as_bool().unwrap());
    let mine = &all[&chain];
    assert!(mine["ok"].as_bool().unwrap() && mine["records"].as_u64().unwrap() >= 4, "{mine}");
    assert_eq!(mine["org_id"], org.as_str());
    let (st, admin) = mint(&gw, &root(&gw), "org_admin", Some(&org)).await;
    assert_eq!(st, 201, "{admin}");
    let admin = admin["token"].as_str().unwrap().to_owned();
    let (st, v) = verify(admin.clone(), "").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(by_chain(&v).keys().collect::<Vec<_>>(), vec![&chain], "an org's operator verifies its chain only");
    let other = new_org(&gw, "globex").await;
    let (st, _) = call(&gw, &admin, Method::POST, &format!("/admin/v1/audit/verify?org={other}"), None).await;
    assert_eq!(st, 404, "another org's chain is not there for them");

    // someone with database access rewrites one event of acme's chain
    let db = gw.data_path().join("data").join("gatehouse.db");
    let changed = gatehouse_testkit::stores::exec_sqlite(
        &db,
        &format!(
            "UPDATE audit_log SET lines = replace(lines, '\"action\":\"key.create\"', '\"action\":\"key.list\"') \
             WHERE chain = '{chain}' AND lines LIKE '%\"action\":\"key.create\"%'"
        ),
    )
    .await;
    assert_eq!(changed, 1);

    // the schedule finds it on its own and raises it in that chain (where webhooks hear it)
    let raised = || {
        let (gw, org) = (&gw, &org);
        async move {
            let (_, v) =
                as_root(gw, Method::GET, &format!("/admin/v1/audit?org={org}&action=audit.broken"), None).await;
            v["data"].as_array().and_then(|d| d.first().cloned())
        }
    };
    assert!(
        gatehouse_testkit::eventually(Duration::from_secs(10), || async { raised().await.is_some() }).await,
        "a scheduled verification raised audit.broken"
    );
    let e = raised().await.unwrap();
    assert_eq!(
        (e["outcome"].as_str(), e["code"].as_str(), e["actor"].as_str()),
        (Some("failed"), Some("modified"), Some("system"))
    );
    assert!(e["target"].as_str().unwrap().starts_with(&format!("{chain}@")), "{e}");

    // and on demand: the broken chain says where, the others still verify
    let (st, v) = verify(root(&gw), "").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["ok"], false);
    let all = by_chain(&v);
    assert_eq!((all[&chain]["ok"].as_bool(), all[&chain]["problem"].as_str()), (Some(false), Some("modified")));
    assert!(all[&chain]["broken_at"].as_u64().unwrap() >= 1);
    assert!(all["platform"]["ok"].as_bool().unwrap(), "the platform chain is untouched");
}
