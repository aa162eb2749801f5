//! Deployments and fallbacks (issue #18, docs/ROUTING.md) through the real binary: a model
//! served by several fake providers, each scripted to fail in a way of the failure matrix.

use std::time::Duration;

use gatehouse_testkit::{Behavior, FakeProvider, TestGateway};
use serde_json::{Value, json};

use crate::common::{PROVIDER_SECRET, gateway, json, openai_stream};

/// Model `m`: deployments `primary` and `backup` (the next tier) on two fakes; `split`: a
/// model on both at weights 3 and 1. The primary's breaker opens after `breaker_failures`
/// failures in a row, for 400 ms.
fn config(primary: &str, backup: &str, breaker_failures: u32) -> String {
    format!(
        r#"
[[providers]]
name = "primary"
base_url = "{primary}"
api_key = "env:K"
first_byte_timeout_ms = 1000
breaker_failures = {breaker_failures}
breaker_cooldown_ms = 400

[[providers]]
name = "backup"
base_url = "{backup}"
api_key = "env:K"
first_byte_timeout_ms = 5000
region = "eu"

[[models]]
name = "m"
provider = "primary"

[[models.deployments]]
provider = "backup"
provider_model = "m-backup"
priority = 1

[[models]]
name = "split"
provider = "primary"
weight = 3

[[models.deployments]]
provider = "backup"

[[models]]
name = "retried"
provider = "backup"
retries = 2
retry_budget = 0.5

[[models]]
name = "quick"
provider = "primary"
first_byte_timeout_ms = 150

[[models.deployments]]
provider = "backup"

[[models]]
name = "stalls"
provider = "primary"
idle_timeout_ms = 300

[[models]]
name = "metered"
provider = "primary"
rpm = 6

[[models.deployments]]
provider = "backup"
priority = 1

[[models]]
name = "metered-alone"
provider = "primary"
tpm = 50

[[models]]
name = "hedged"
provider = "primary"
hedge_percentile = 90

[[models.deployments]]
provider = "backup"
priority = 1

[[providers]]
name = "patient"
base_url = "{primary}"
api_key = "env:K"
first_byte_timeout_ms = 2000
idle_timeout_ms = 300

[[models]]
name = "patient"
provider = "patient"
"#
    )
}

async fn two_with(breaker_failures: u32) -> (FakeProvider, FakeProvider, TestGateway) {
    let (a, b) = (FakeProvider::spawn().await, FakeProvider::spawn().await);
    let cfg = config(&a.base_url(), &b.base_url(), breaker_failures);
    let gw = gateway().config(&cfg).env("K", PROVIDER_SECRET).spawn().await;
    (a, b, gw)
}

/// With a breaker that does not open in these tests.
async fn two() -> (FakeProvider, FakeProvider, TestGateway) {
    two_with(1000).await
}

async fn chat(gw: &TestGateway, model: &str, stream: bool) -> reqwest::Response {
    let body = json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hello"}]});
    post(gw, gw.key(), &body).await
}

/// Sends `n` requests for `model` (each must succeed): how many attempts each fake saw.
async fn answered_by(
    gw: &TestGateway,
    (a, b): (&FakeProvider, &FakeProvider),
    model: &str,
    n: usize,
) -> (usize, usize) {
    let before = (a.calls(), b.calls());
    for _ in 0..n {
        assert_eq!(chat(gw, model, false).await.status(), 200);
    }
    (a.calls() - before.0, b.calls() - before.1)
}

/// A chat completion as `key`.
async fn post(gw: &TestGateway, key: &str, body: &Value) -> reqwest::Response {
    gw.http.post(format!("{}/v1/chat/completions", gw.data_url)).bearer_auth(key).json(body).send().await.unwrap()
}

#[tokio::test]
async fn a_failing_deployment_falls_back_before_the_first_byte() {
    let (a, b, gw) = two().await;
    for (failure, label) in [
        (Behavior::Status(503), "503"),
        (Behavior::Status(429), "429"),
        (Behavior::Status(401), "401"),
        (Behavior::Latency(Duration::from_millis(2000)), "slow first byte"),
    ] {
        a.set(failure);
        let before = (a.calls(), b.calls());
        let resp = chat(&gw, "m", false).await;
        assert_eq!(resp.status(), 200, "{label}");
        assert!(json(resp).await["choices"][0]["message"]["content"].as_str().unwrap().contains("fake provider"));
        assert_eq!((a.calls() - before.0, b.calls() - before.1), (1, 1), "{label}: one attempt each");
        assert_eq!(b.last_request().unwrap().body["model"], "m-backup", "the backup's own name for the model");

        let resp = chat(&gw, "m", true).await;
        assert_eq!(resp.status(), 200, "{label}, streamed");
        let body = resp.text().await.unwrap();
        let (text, _, _, usage) = openai_stream(&body);
        assert!(text.starts_with("reply-canary-5d1e tok0") && body.ends_with("data: [DONE]\n\n"), "{label}: {body}");
        assert_eq!(usage["completion_tokens"], 8, "one stream, not two spliced");
    }
    assert!(gw.metric("gatehouse_upstream_fallbacks_total{provider=\"primary\"}").await >= 8.0);
    // the audit line names the deployment that answered
    let logs = gw.logs_once("provider=\"backup\"").await;
    assert!(logs.contains("model=\"m\" provider=\"backup\""), "the audit line names the backup");
    // and so does the stored, hash-chained event
    let stored = gatehouse_testkit::eventually(Duration::from_secs(30), || async {
        let resp = gw.admin(reqwest::Method::GET, "/admin/v1/audit?action=request.allowed&limit=50", None).await;
        resp.text().await.unwrap_or_default().contains("\"provider\":\"backup\"")
    })
    .await;
    assert!(stored, "the stored audit event names the deployment that answered");
    // and the usage ledger: eight answers, all by the backup, none charged to the primary
    let org = gw.admin(reqwest::Method::GET, "/admin/v1/orgs", None).await.json::<Value>().await.unwrap();
    let org = org["data"][0]["id"].as_str().unwrap().to_owned();
    let total = crate::budgets::ledger(&gw, &org, "model=m&provider=backup", 8).await;
    assert_eq!(total["requests"], 8, "{total}");
    let report = gw.admin(reqwest::Method::GET, &format!("/admin/v1/orgs/{org}/usage?provider=primary"), None).await;
    assert_eq!(report.json::<Value>().await.unwrap()["total"]["requests"], 0, "the primary served nothing");

    // a refused connection: nothing listens where the primary was
    drop(a);
    assert_eq!(chat(&gw, "m", false).await.status(), 200);
}

#[tokio::test]
async fn what_would_fail_everywhere_is_returned_and_the_last_failure_is_the_callers() {
    let (a, b, gw) = two().await;
    a.set(Behavior::Status(400));
    let before = b.calls();
    let resp = chat(&gw, "m", false).await;
    assert_eq!(resp.status(), 400, "the provider refused the request itself");
    assert_eq!(b.calls(), before, "a request that fails everywhere is not sent elsewhere");

    // both fail: the caller gets the last one's status and Retry-After
    a.set(Behavior::Status(503));
    b.set(Behavior::Status(429));
    let resp = chat(&gw, "m", false).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_rate_limited");

    // a streamed answer that breaks after its first bytes is that deployment's to the end
    a.set(Behavior::Disconnect);
    b.set(Behavior::Ok);
    let before = b.calls();
    let body = chat(&gw, "m", true).await.text().await.unwrap();
    assert!(!body.contains("[DONE]"), "cut, not completed by another deployment: {body}");
    assert_eq!(b.calls(), before);
}

#[tokio::test]
async fn weights_share_the_traffic_of_a_tier() {
    let (a, b, gw) = two().await;
    assert_eq!(answered_by(&gw, (&a, &b), "split", 8).await, (6, 2), "3:1");
    // a lower tier takes nothing while the first answers
    let before = b.calls();
    for _ in 0..4 {
        assert_eq!(chat(&gw, "m", false).await.status(), 200);
    }
    assert_eq!(b.calls(), before);
}

#[tokio::test]
async fn a_broken_deployment_is_skipped_until_a_probe_finds_it_well() {
    let (a, b, gw) = two_with(3).await;
    a.set(Behavior::Status(503));
    for _ in 0..3 {
        assert_eq!(chat(&gw, "m", false).await.status(), 200, "served by the backup");
    }
    // three failures in a row opened the primary's breaker: it is not even tried now
    assert_eq!(answered_by(&gw, (&a, &b), "m", 5).await, (0, 5), "open: straight to the backup");
    assert_eq!(gw.metric("gatehouse_breaker_opened_total{provider=\"primary\"}").await, 1.0);
    // the admin API shows it (open, or half-open once the 400 ms cool-down is over)
    let primary = deployment(&gw, "m", "primary").await;
    assert_ne!(primary["breaker"]["state"], "closed", "{primary}");
    assert!(primary["breaker"]["failures"].as_u64() >= Some(3) && primary["breaker"]["open_until"].is_u64());
    let backup = deployment(&gw, "m", "backup").await;
    assert_eq!(backup["breaker"]["state"], "closed");
    assert_eq!(
        (&backup["region"], &backup["priority"], &backup["provider_model"]),
        (&json!("eu"), &json!(1), &json!("m-backup"))
    );

    // after the cool-down one request probes it; well again, it is first again
    a.set(Behavior::Ok);
    let well = gatehouse_testkit::eventually(Duration::from_secs(5), || async {
        let calls = a.calls();
        chat(&gw, "m", false).await.status() == 200 && a.calls() > calls
    })
    .await;
    assert!(well, "a probe reached the primary");
    assert_eq!(answered_by(&gw, (&a, &b), "m", 3).await, (3, 0), "closed again");
    assert_eq!(
        deployment(&gw, "m", "primary").await["breaker"],
        json!({"state": "closed", "failures": 0, "open_until": null})
    );
    assert_eq!(gw.metric("gatehouse_breaker_closed_total{provider=\"primary\"}").await, 1.0);
    // both changes are on the platform's audit chain, naming the deployment
    for action in ["deployment.breaker_opened", "deployment.breaker_closed"] {
        let found = gatehouse_testkit::eventually(Duration::from_secs(30), || async {
            let resp = gw.admin(reqwest::Method::GET, &format!("/admin/v1/audit?action={action}"), None).await;
            let v: Value = resp.json().await.unwrap_or_default();
            v["data"].as_array().is_some_and(|d| d.len() == 1 && d[0]["target"] == "m/primary")
        })
        .await;
        assert!(found, "one {action} event for m/primary");
    }
}

/// One deployment's row of `GET /admin/v1/deployments`.
async fn deployment(gw: &TestGateway, model: &str, provider: &str) -> Value {
    let resp = gw.admin(reqwest::Method::GET, "/admin/v1/deployments", None).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let rows = v["data"].as_array().unwrap();
    assert!(rows.iter().all(|d| d["provider"] != "mock"), "the mock has no health to show");
    rows.iter().find(|d| d["model"] == model && d["provider"] == provider).cloned().unwrap_or_else(|| panic!("{v}"))
}

#[tokio::test]
async fn every_deployment_failing_is_retried_within_the_budget() {
    let (_a, b, gw) = two().await;
    // one deployment, two retries: two failures then an answer
    b.fail_next(503, 2);
    let before = b.calls();
    let started = std::time::Instant::now();
    assert_eq!(chat(&gw, "retried", false).await.status(), 200);
    assert_eq!(b.calls() - before, 3, "the first attempt and two retries");
    // the retries' deadline is the backup's first-byte timeout (5 s, room for a busy machine)
    assert!(started.elapsed() < Duration::from_secs(5), "backoff inside the first-byte timeout");
    // three failures: the retries are spent, the last failure is the caller's
    b.fail_next(503, 3);
    let resp = chat(&gw, "retried", false).await;
    assert_eq!(resp.status(), 502);
    // what would fail everywhere is not retried
    b.fail_next(400, 1);
    let before = b.calls();
    assert_eq!(chat(&gw, "retried", false).await.status(), 400);
    assert_eq!(b.calls() - before, 1);

    // the budget: half a retry per request; a run of failures spends it and stops retrying
    let before = b.calls();
    b.fail_next(503, 1000);
    let n = 20;
    for _ in 0..n {
        assert_eq!(chat(&gw, "retried", false).await.status(), 502);
    }
    let attempts = b.calls() - before;
    assert!(attempts <= n + n / 2 + 10, "retries bounded by the budget (and its burst): {attempts} attempts");
    assert!(gw.metric("gatehouse_upstream_retries_total{model=\"retried\"}").await >= 4.0);
    b.fail_next(503, 0);
}

#[tokio::test]
async fn a_deployment_can_have_a_shorter_first_byte_timeout_than_its_provider() {
    let (a, b, gw) = two().await;
    // 400 ms is inside the primary provider's 1 s, but not the `quick` deployment's 150 ms
    // (margins wide enough for a busy machine's late timers)
    a.set(Behavior::Latency(Duration::from_millis(400)));
    let before = b.calls();
    assert_eq!(chat(&gw, "quick", false).await.status(), 200);
    assert_eq!(b.calls() - before, 1, "the deployment's own timeout sent it to the backup");
    let before = b.calls();
    assert_eq!(chat(&gw, "m", false).await.status(), 200);
    assert_eq!(b.calls(), before, "the provider's timeout, where the deployment sets none");
}

#[tokio::test]
async fn tenant_routing_rules_keep_traffic_in_the_allowed_deployments_or_refuse_it() {
    let (a, b, gw) = two().await;
    let (org, project, _, key) = crate::budgets::key_in_new_project(&gw, "residency").await;
    let call = |model: &'static str| {
        let (gw, key) = (&gw, key.clone());
        async move { post(gw, &key, &json!({"model": model, "messages": [{"role": "user", "content": "hello"}]})).await }
    };
    let put = |path: String, body: Value| {
        let gw = &gw;
        async move { gw.admin(reqwest::Method::PUT, &path, Some(&body)).await }
    };
    let org_path = format!("/admin/v1/orgs/{org}/routing");
    let project_path = format!("/admin/v1/orgs/{org}/projects/{project}/routing");

    // names the config does not serve are refused: a typo would refuse everything
    for (body, param) in [
        (json!({"providers": ["nowhere"]}), "providers"),
        (json!({"providers": []}), "providers"),
        (json!({"regions": ["mars"]}), "regions"),
        (json!({"pins": {"m": "nowhere"}}), "pins"),
        (json!({"pins": {"no-such-model": "primary"}}), "pins"),
    ] {
        let resp = put(org_path.clone(), body).await;
        assert_eq!(resp.status(), 400);
        assert_eq!(resp.json::<Value>().await.unwrap()["error"]["param"], param);
    }
    assert_eq!(put(org_path.clone(), json!({"zones": ["eu"]})).await.status(), 400, "unknown fields");

    // the org keeps its traffic in the EU: the healthy first deployment (no region) is skipped
    let resp = put(org_path.clone(), json!({"regions": ["eu"]})).await;
    assert_eq!(resp.status(), 200);
    let view: Value = resp.json().await.unwrap();
    assert!(view["effective"].as_array().unwrap().iter().all(|d| d["region"] == "eu"), "{view}");
    let before = (a.calls(), b.calls());
    assert_eq!(call("m").await.status(), 200);
    assert_eq!(call("retried").await.status(), 200, "a one-deployment model in the EU");
    assert_eq!((a.calls() - before.0, b.calls() - before.1), (0, 2), "only the EU deployment");

    // when the allowed deployment fails, the caller gets its failure: nothing leaves the set
    b.set(Behavior::Status(503));
    let before = a.calls();
    assert_eq!(call("m").await.status(), 502);
    assert_eq!(a.calls(), before, "no fallback outside the allowed set");
    b.set(Behavior::Ok);

    // the project pins `m` to the primary, which the org's rule excludes: both apply, so
    // nothing may serve it -> 403, naming neither provider nor region
    assert_eq!(put(project_path.clone(), json!({"pins": {"m": "primary"}})).await.status(), 200);
    let resp = call("m").await;
    assert_eq!(resp.status(), 403);
    let text = resp.text().await.unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!((&v["error"]["code"], &v["error"]["param"]), (&json!("permission_denied"), &json!("model")));
    assert!(!text.contains("primary") && !text.contains("eu"), "{text}");
    assert_eq!(call("retried").await.status(), 200, "the pin is for `m` only");
    // the refusal is the route gate's, audited
    let refused = gatehouse_testkit::eventually(Duration::from_secs(30), || async {
        let resp = gw.admin(reqwest::Method::GET, "/admin/v1/audit?action=provider.no_route", None).await;
        resp.text().await.unwrap_or_default().contains("permission_denied")
    })
    .await;
    assert!(refused);

    // the org lifts its rule: the project's pin alone applies
    assert_eq!(gw.admin(reqwest::Method::DELETE, &org_path, None).await.status(), 200);
    let before = (a.calls(), b.calls());
    for _ in 0..3 {
        assert_eq!(call("m").await.status(), 200);
    }
    assert_eq!((a.calls() - before.0, b.calls() - before.1), (3, 0), "pinned to the primary");
    let view = gw.admin(reqwest::Method::GET, &project_path, None).await.json::<Value>().await.unwrap();
    assert_eq!(view["policy"], json!({"pins": {"m": "primary"}}));
    let effective_m: Vec<&Value> = view["effective"].as_array().unwrap().iter().filter(|d| d["model"] == "m").collect();
    assert_eq!(effective_m.len(), 1, "{view}");
    assert_eq!(effective_m[0]["provider"], "primary");

    // other projects and the quickstart key are untouched by this project's rule
    let before = b.calls();
    a.set(Behavior::Status(503));
    assert_eq!(chat(&gw, "m", false).await.status(), 200, "another project falls back as configured");
    assert_eq!(b.calls() - before, 1);
}

#[tokio::test]
async fn deployment_timeouts_and_the_clients_deadline_bound_every_attempt() {
    let (a, b, gw) = two().await;
    // a deployment's own idle timeout (300 ms; its provider's is 60 s) ends a silent stream,
    // and a stream that broke off counts against the deployment's breaker
    for (behavior, failures) in [(Behavior::Stall, 1), (Behavior::Disconnect, 2)] {
        a.set(behavior);
        let started = std::time::Instant::now();
        let resp = chat(&gw, "stalls", true).await;
        assert_eq!(resp.status(), 200, "the stream had begun");
        let body = resp.text().await.unwrap();
        assert!(body.contains("\"error\""), "the caller is told in the stream: {body}");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        // counted when the stream's answer is finished, just after the client read its end
        let counted = gatehouse_testkit::eventually(Duration::from_secs(5), || async {
            deployment(&gw, "stalls", "primary").await["breaker"]["failures"] == failures
        })
        .await;
        assert!(counted, "{}", deployment(&gw, "stalls", "primary").await);
    }

    // a provider's idle timeout (300 ms) bounds the gaps in an answer, not the wait for its
    // first byte (2 s here)
    a.set(Behavior::Latency(Duration::from_millis(800)));
    let resp = chat(&gw, "patient", false).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap_or_default());

    // the client's own deadline (the SDKs' X-Stainless-Timeout) is shorter than the primary's
    // first-byte timeout (1 s): the attempt ends at it, with no time left for the backup, and
    // it is not held against the primary
    a.set(Behavior::Latency(Duration::from_millis(2000)));
    let before = b.calls();
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hello"}]});
    let send = |hint: &'static str| {
        let req = gw.http.post(format!("{}/v1/chat/completions", gw.data_url)).bearer_auth(gw.key());
        req.header("x-stainless-timeout", hint).json(&body).send()
    };
    let started = std::time::Instant::now();
    let resp = send("0.4").await.unwrap();
    assert_eq!(resp.status(), 504);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["code"], "upstream_timeout");
    assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
    assert_eq!(b.calls(), before, "no time was left for the backup");
    assert_eq!(deployment(&gw, "m", "primary").await["breaker"]["failures"], 0, "the client's deadline");
    // a hint that is not a number of seconds is ignored: the usual fallback answers
    for hint in ["soon", "-1", "0", "1e308"] {
        assert_eq!(send(hint).await.unwrap().status(), 200, "{hint}");
    }
    // a generous hint changes nothing
    assert_eq!(send("600").await.unwrap().status(), 200);
}

#[tokio::test]
async fn two_replicas_agree_on_a_breaker_within_a_second_through_redis() {
    let (a, b) = (FakeProvider::spawn().await, FakeProvider::spawn().await);
    let prefix = format!("gh-breaker-{}-{}", std::process::id(), a.addr().port());
    let cfg = format!(
        "{}\n[redis]\nurl = \"env:GH_TEST_REDIS\"\nkey_prefix = \"{prefix}\"\ntimeout_ms = 1000\n",
        config(&a.base_url(), &b.base_url(), 3).replace("breaker_cooldown_ms = 400", "breaker_cooldown_ms = 1500")
    );
    let spawn = || {
        gateway().config(&cfg).env("K", PROVIDER_SECRET).env("GH_TEST_REDIS", &crate::common::redis_url()).try_spawn()
    };
    let (one, two) = match (spawn().await, spawn().await) {
        (Ok(one), Ok(two)) => (one, two),
        (Err(e), _) | (_, Err(e)) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("Redis is required under CI=true: {e}")
        }
        (Err(e), _) | (_, Err(e)) => return eprintln!("\n*** Redis unreachable ({e}): SKIPPED ***\n"),
    };
    async fn primary(gw: &TestGateway) -> Value {
        deployment(gw, "m", "primary").await["breaker"].clone()
    }
    // replica one sees the primary fail three times in a row: its breaker opens
    a.set(Behavior::Status(503));
    for _ in 0..3 {
        assert_eq!(chat(&one, "m", false).await.status(), 200, "served by the backup");
    }
    let opened = primary(&one).await;
    assert_eq!(opened["state"], "open", "{opened}");
    let started = std::time::Instant::now();
    // replica two, which never saw a failure, agrees within a second: the same open period
    let agreed = gatehouse_testkit::eventually(Duration::from_secs(1), || async {
        primary(&two).await["open_until"] == opened["open_until"]
    })
    .await;
    assert!(agreed, "replica two: {} after {:?}", primary(&two).await, started.elapsed());
    // and acts on it: while open, its requests go straight to the backup
    let before = a.calls();
    assert_eq!(chat(&two, "m", false).await.status(), 200);
    assert_eq!(a.calls(), before, "replica two skips the open deployment");

    // the primary recovers; replica one's probe (after the cool-down) closes its breaker,
    // and replica two follows within a second
    a.set(Behavior::Ok);
    let closed = gatehouse_testkit::eventually(Duration::from_secs(10), || async {
        chat(&one, "m", false).await.status() == 200 && primary(&one).await["state"] == "closed"
    })
    .await;
    assert!(closed, "replica one: {}", primary(&one).await);
    let started = std::time::Instant::now();
    let agreed =
        gatehouse_testkit::eventually(Duration::from_secs(1), || async { primary(&two).await["state"] == "closed" })
            .await;
    assert!(agreed, "replica two: {} after {:?}", primary(&two).await, started.elapsed());
}

#[tokio::test]
async fn a_model_falls_back_to_another_only_where_configured_allowed_and_budgeted_for() {
    let (a, b) = (FakeProvider::spawn().await, FakeProvider::spawn().await);
    let cfg = format!(
        r#"
[[providers]]
name = "primary"
base_url = "{}"
api_key = "env:K"
[[providers]]
name = "backup"
base_url = "{}"
api_key = "env:K"
[[models]]
name = "cheap"
provider = "primary"
fallbacks = ["dear"]
[[models]]
name = "dear"
provider = "backup"
provider_model = "dear-v1"
[prices."cheap"]
input_per_mtok = 1.0
output_per_mtok = 1.0
[prices."dear"]
input_per_mtok = 100.0
output_per_mtok = 100.0
"#,
        a.base_url(),
        b.base_url()
    );
    let gw = gateway().config(&cfg).env("K", PROVIDER_SECRET).spawn().await;
    let (org, project, _, key) = crate::budgets::key_in_new_project(&gw, "stand-in").await;
    let ask = |key: String, max_tokens: u32| {
        let gw = &gw;
        let body = json!({"model": "cheap", "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]});
        async move { post(gw, &key, &body).await }
    };

    // the model's own deployment fails: the configured stand-in answers, and the ledger
    // records the model that answered, at its price
    a.set(Behavior::Status(503));
    assert_eq!(ask(key.clone(), 10).await.status(), 200);
    assert_eq!(b.last_request().unwrap().body["model"], "dear-v1");
    let dear = crate::budgets::ledger(&gw, &org, &format!("project={project}&model=dear"), 1).await;
    assert!(dear["cost_micro_usd"].as_i64() > Some(0), "charged at the stand-in's price: {dear}");

    // a key that may not use the stand-in gets the failure, and the stand-in sees nothing
    let (_, narrow) = gw.create_key(json!({"name": "cheap-only", "project": "stand-in", "models": ["cheap"]})).await;
    let before = b.calls();
    assert_eq!(ask(narrow.clone(), 10).await.status(), 502);
    assert_eq!(b.calls(), before, "only to models the caller may use");

    // a dollar budget room for the cheap model's worst case (about $0.001) but not the
    // stand-in's ($0.1): the reservation is for the costlier, so the request is refused even
    // though the cheap model is well; the narrow key reserves for the cheap model alone
    a.set(Behavior::Ok);
    let path = format!("/admin/v1/orgs/{org}/projects/{project}/limits");
    let spec = json!({"budgets": [{"period": "monthly", "usd": 0.01}]});
    assert_eq!(gw.admin(reqwest::Method::PUT, &path, Some(&spec)).await.status(), 200);
    let resp = ask(key.clone(), 1000).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["code"], "insufficient_quota");
    assert_eq!(ask(narrow, 1000).await.status(), 200, "reserved for the cheap model only");

    // a stand-in with rates of its own for the caller is not tried (they were not checked)
    assert_eq!(gw.admin(reqwest::Method::DELETE, &path, None).await.status(), 200);
    a.set(Behavior::Status(503));
    assert_eq!(ask(key.clone(), 10).await.status(), 200, "the stand-in answers without limits of its own");
    let spec = json!({"models": {"dear": {"rpm": 1000}}});
    assert_eq!(gw.admin(reqwest::Method::PUT, &path, Some(&spec)).await.status(), 200);
    let before = b.calls();
    assert_eq!(ask(key, 10).await.status(), 502);
    assert_eq!(b.calls(), before, "not tried");
}

#[tokio::test]
async fn a_deployments_upstream_quota_is_kept_by_sending_elsewhere_or_refusing() {
    let (a, b, gw) = two().await;
    // 6 requests a minute on the primary (a burst of one): the next goes to the backup
    assert_eq!(answered_by(&gw, (&a, &b), "metered", 3).await, (1, 2), "the quota is kept, not exceeded");
    assert_eq!(deployment(&gw, "metered", "primary").await["breaker"]["failures"], 0, "not the deployment's fault");

    // 50 tokens a minute and no other deployment: the second request of ~30 tokens is refused
    // with the time it would fit, and never sent
    let body = json!({"model": "metered-alone", "max_tokens": 20, "messages": [{"role": "user", "content": "hello"}]});
    assert_eq!(post(&gw, gw.key(), &body).await.status(), 200);
    let before = a.calls();
    let resp = post(&gw, gw.key(), &body).await;
    assert_eq!(resp.status(), 429);
    let wait: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["code"], "upstream_rate_limited");
    assert_eq!(a.calls(), before, "not sent");
}

#[tokio::test]
async fn a_slow_first_deployment_is_hedged_and_only_the_winner_is_charged() {
    let (a, b, gw) = two().await;
    // no hedging until the model has enough answers to know its usual first byte
    a.set(Behavior::Latency(Duration::from_millis(300)));
    assert_eq!(answered_by(&gw, (&a, &b), "hedged", 1).await, (1, 0), "too few answers to judge: no hedge");
    a.set(Behavior::Ok);
    assert_eq!(answered_by(&gw, (&a, &b), "hedged", 25).await, (25, 0));

    // now the primary is slow (700 ms, inside its 1 s first-byte timeout): past the 90th
    // percentile of its usual first byte the backup is asked too, answers first, and wins
    a.set(Behavior::Latency(Duration::from_millis(700)));
    let started = std::time::Instant::now();
    assert_eq!(answered_by(&gw, (&a, &b), "hedged", 1).await, (1, 1), "both were asked");
    assert!(started.elapsed() < Duration::from_millis(650), "the hedge answered first: {:?}", started.elapsed());
    assert_eq!(gw.metric("gatehouse_upstream_hedges_total{model=\"hedged\"}").await, 1.0);
    assert_eq!(gw.metric("gatehouse_upstream_hedge_wins_total{provider=\"backup\"}").await, 1.0);
    // the winner alone is charged: one ledger row, the backup's
    let org = gw.admin(reqwest::Method::GET, "/admin/v1/orgs", None).await.json::<Value>().await.unwrap();
    let org = org["data"][0]["id"].as_str().unwrap().to_owned();
    let total = crate::budgets::ledger(&gw, &org, "model=hedged&provider=backup", 1).await;
    assert_eq!(total["requests"], 1);

    // a stream is never hedged: it waits for the slow primary
    let before = b.calls();
    assert_eq!(chat(&gw, "hedged", true).await.status(), 200);
    assert_eq!(b.calls(), before, "streams are not hedged");
}

#[tokio::test]
async fn active_health_checks_open_and_close_breakers_before_requests_find_out() {
    let (a, b) = (FakeProvider::spawn().await, FakeProvider::spawn().await);
    let cfg = format!(
        r#"
[[providers]]
name = "watched"
base_url = "{}"
api_key = "env:K"
health_check_path = "/models"
health_check_interval_ms = 1000
breaker_failures = 2
breaker_cooldown_ms = 600000
[[providers]]
name = "backup"
base_url = "{}"
api_key = "env:K"
[[models]]
name = "w"
provider = "watched"
[[models.deployments]]
provider = "backup"
priority = 1
"#,
        a.base_url(),
        b.base_url()
    );
    let gw = gateway().config(&cfg).env("K", PROVIDER_SECRET).spawn().await;
    // the provider goes down; no request has seen it, but two failed checks open its breaker
    a.set(Behavior::Status(503));
    let opened = gatehouse_testkit::eventually(Duration::from_secs(10), || async {
        deployment(&gw, "w", "watched").await["breaker"]["state"] == "open"
    })
    .await;
    assert!(opened, "{}", deployment(&gw, "w", "watched").await);
    let (served, before) = (a.served(), b.served());
    assert_eq!(chat(&gw, "w", false).await.status(), 200);
    assert_eq!((a.served() - served, b.served() - before), (0, 1), "straight to the backup");
    assert!(gw.metric("gatehouse_health_checks_total{provider=\"watched\",outcome=\"unhealthy\"}").await >= 2.0);

    // it recovers: a passing check ends the ten-minute cool-down (half-open), and the next
    // request probes it and closes the breaker
    a.set(Behavior::Ok);
    let probing = gatehouse_testkit::eventually(Duration::from_secs(10), || async {
        deployment(&gw, "w", "watched").await["breaker"]["state"] == "half_open"
    })
    .await;
    assert!(probing, "{}", deployment(&gw, "w", "watched").await);
    let served = a.served();
    assert_eq!(chat(&gw, "w", false).await.status(), 200);
    assert_eq!(a.served() - served, 1, "the probe");
    assert_eq!(deployment(&gw, "w", "watched").await["breaker"]["state"], "closed");
    assert_eq!(chat(&gw, "w", false).await.status(), 200);
    assert_eq!(a.served() - served, 2, "first again");
}

#[tokio::test]
async fn only_a_token_granted_debug_routing_is_told_which_deployment_served_it() {
    let (a, _b, gw) = two().await;
    a.set(Behavior::Status(503));
    let mint = |scopes: Value| {
        let gw = &gw;
        async move {
            let body = json!({"name": "dbg", "scopes": scopes, "expires_in_seconds": 600});
            let (st, v) = crate::common::as_root(gw, reqwest::Method::POST, "/admin/v1/capabilities", Some(body)).await;
            assert_eq!(st, 201, "{v}");
            v["token"].as_str().unwrap().to_owned()
        }
    };
    let debug = mint(json!(["chat:*", "debug:routing"])).await;
    let plain = mint(json!(["chat:*"])).await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hello"}]});
    let ask = |key: String, header: &'static str| {
        let (gw, body) = (&gw, body.clone());
        async move {
            let req = gw.http.post(format!("{}/v1/chat/completions", gw.data_url)).bearer_auth(key);
            req.header("x-gatehouse-debug", header).json(&body).send().await.unwrap()
        }
    };
    let told = ask(debug.clone(), "routing").await;
    assert_eq!(told.status(), 200);
    assert_eq!(
        (&told.headers()["x-gatehouse-model"], &told.headers()["x-gatehouse-provider"]),
        (&"m".parse().unwrap(), &"backup".parse().unwrap())
    );
    for (key, header, who) in [
        (debug, "yes", "another value"),
        (plain, "routing", "a token without the scope"),
        (gw.key().to_owned(), "routing", "an API key"),
    ] {
        let resp = ask(key, header).await;
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().get("x-gatehouse-provider").is_none(), "{who} is not told");
    }
}

#[tokio::test]
async fn a_deployment_can_give_up_connecting_sooner_than_its_provider() {
    // a listener whose accept queue is full and never drained: new connections hang in the
    // handshake, as with a host that drops packets
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full = socket.listen(1).unwrap();
    let addr = full.local_addr().unwrap();
    // fill it until a connection no longer completes: from then on, none does
    let mut fillers = Vec::new();
    for _ in 0..16 {
        let pending = tokio::spawn(tokio::net::TcpStream::connect(addr));
        let full = !gatehouse_testkit::eventually(Duration::from_millis(300), || async { pending.is_finished() }).await;
        fillers.push(pending);
        if full {
            break;
        }
    }
    assert!(fillers.last().is_some_and(|f| !f.is_finished()), "the accept queue filled up");
    let b = FakeProvider::spawn().await;
    let cfg = format!(
        r#"
[[providers]]
name = "blackhole"
base_url = "http://{addr}/v1"
api_key = "env:K"
connect_timeout_ms = 20000
[[providers]]
name = "backup"
base_url = "{}"
api_key = "env:K"
[[models]]
name = "c"
provider = "blackhole"
connect_timeout_ms = 300
[[models.deployments]]
provider = "backup"
priority = 1
"#,
        b.base_url()
    );
    let gw = gateway().config(&cfg).env("K", PROVIDER_SECRET).spawn().await;
    let started = std::time::Instant::now();
    assert_eq!(chat(&gw, "c", false).await.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the deployment's 300 ms, not the provider's 20 s: {:?}",
        started.elapsed()
    );
    assert_eq!(b.served(), 1, "the backup answered");
    drop(fillers);
}
