//! The response cache (issue #19): off until a tenant turns it on; a hit never crosses orgs,
//! projects or guardrail policies, still passes the output guardrail, is metered as a hit at
//! no cost; streams are kept once complete and replayed as streams; the caller's
//! `Cache-Control` and the TTL are honoured.

use std::time::Duration;

use gatehouse_testkit::{Behavior, FakeProvider, TestGateway, eventually};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{as_root, gateway_with, openai_stream};

const SECRET: &str = "sk-proj-Zq8XbT3kLm9VwR2yNc5HdJ7pFa4GsE6u";

async fn ask(gw: &TestGateway, key: &str, prompt: &str, headers: &[(&str, &str)]) -> (bool, String) {
    let body = json!({"model": "fake-model", "messages": [{"role": "user", "content": prompt}]});
    let mut req = gw.http.post(format!("{}/v1/chat/completions", gw.data_url)).bearer_auth(key).json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let hit = resp.headers().get("x-gatehouse-cache").is_some_and(|v| v == "hit");
    let v: Value = resp.json().await.unwrap();
    (hit, v["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_owned())
}

/// Asks `model` the same question: whether the answer came from the cache (it must be a 200).
async fn hit_for(gw: &TestGateway, key: &str, model: &str) -> bool {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "same"}]});
    let resp = gw.http.post(format!("{}/v1/chat/completions", gw.data_url)).bearer_auth(key).json(&body).send();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.headers().get("x-gatehouse-cache").is_some()
}

async fn put(gw: &TestGateway, path: &str, body: Value) {
    let (st, v) = as_root(gw, Method::PUT, path, Some(body)).await;
    assert_eq!(st, 200, "{path}: {v}");
}

/// A new project of the default org with a key: (org, project, key).
async fn project(gw: &TestGateway, name: &str) -> (String, String, String) {
    let (org, project, _, key) = crate::budgets::key_in_new_project(gw, name).await;
    (org, project, key)
}

#[tokio::test]
async fn a_hit_stays_in_its_project_and_policy_passes_the_output_guardrail_and_costs_nothing() {
    let fake = FakeProvider::spawn().await;
    fake.set(Behavior::Reply { text: format!("the key is {SECRET}"), tool_args: None, chunk: 8 });
    let gw = gateway_with(&fake).await;
    let (org, a, key_a) = project(&gw, "a").await;
    let (_, b, key_b) = project(&gw, "b").await;

    // off by default: every request reaches the provider
    let calls = fake.calls();
    assert!(!ask(&gw, &key_a, "q1", &[]).await.0);
    assert!(!ask(&gw, &key_a, "q1", &[]).await.0);
    assert_eq!(fake.calls() - calls, 2, "no cache until a tenant turns it on");

    // on for project a: the second identical request is a hit, and the kept answer still goes
    // through the output guardrail (the provider's secret is redacted in both)
    put(&gw, &format!("/admin/v1/orgs/{org}/projects/{a}/routing"), json!({"cache_ttl_seconds": 300})).await;
    let calls = fake.calls();
    let (hit, first) = ask(&gw, &key_a, "q1", &[]).await;
    assert!(!hit && !first.contains(SECRET), "{first}");
    let (hit, second) = ask(&gw, &key_a, "q1", &[]).await;
    assert!(hit, "the same request again");
    assert_eq!(second, first, "the same answer, redacted again");
    assert_eq!(fake.calls() - calls, 1, "one provider call for two answers");
    assert!(!ask(&gw, &key_a, "q2", &[]).await.0, "another prompt");

    // project b (same org, same prompt) never sees a's entry, even with the cache on
    put(&gw, &format!("/admin/v1/orgs/{org}/projects/{b}/routing"), json!({"cache_ttl_seconds": 300})).await;
    assert!(!ask(&gw, &key_b, "q1", &[]).await.0, "another project's entry is not served");
    assert!(ask(&gw, &key_b, "q1", &[]).await.0, "its own is");

    // another org, same prompt and the cache on: its own entries only
    let (st, other) = as_root(&gw, Method::POST, "/admin/v1/orgs", Some(json!({"name": "other"}))).await;
    assert_eq!(st, 201);
    let other = other["id"].as_str().unwrap().to_owned();
    let (_, p) =
        as_root(&gw, Method::POST, &format!("/admin/v1/orgs/{other}/projects"), Some(json!({"name": "p"}))).await;
    let (_, key_o) = gw.create_key(json!({"name": "o", "org": "other", "project": "p"})).await;
    put(&gw, &format!("/admin/v1/orgs/{other}/routing"), json!({"cache_ttl_seconds": 300})).await;
    assert!(!ask(&gw, &key_o, "q1", &[]).await.0, "another org's entry is not served");
    assert!(ask(&gw, &key_o, "q1", &[]).await.0, "the org's setting covers its projects");
    // a project may turn it off below an org that has it on
    let p = p["id"].as_str().unwrap().to_owned();
    put(&gw, &format!("/admin/v1/orgs/{other}/projects/{p}/routing"), json!({"cache_ttl_seconds": 0})).await;
    assert!(!ask(&gw, &key_o, "q1", &[]).await.0);

    // a guardrail policy change in between: the old entry is not served under the new policy
    put(
        &gw,
        &format!("/admin/v1/orgs/{org}/projects/{a}/guardrails"),
        json!({"detectors": {"pii.email": {"input": "flag"}}}),
    )
    .await;
    assert!(!ask(&gw, &key_a, "q1", &[]).await.0, "a new policy, a new key");
    assert!(ask(&gw, &key_a, "q1", &[]).await.0);

    // the caller's Cache-Control: no-cache asks the provider (and keeps the fresh answer),
    // no-store neither reads nor writes
    let calls = fake.calls();
    assert!(!ask(&gw, &key_a, "q1", &[("cache-control", "no-cache")]).await.0);
    assert!(!ask(&gw, &key_a, "q3", &[("cache-control", "no-store")]).await.0);
    assert!(!ask(&gw, &key_a, "q3", &[]).await.0, "no-store kept nothing");
    assert!(!ask(&gw, &key_a, "q1", &[("Cache-Control", "max-age=0, no-store")]).await.0);
    assert_eq!(fake.calls() - calls, 4);
    // unless the tenant's rule keeps callers on the cache
    let rule = json!({"cache_ttl_seconds": 300, "cache_honours_callers": false});
    put(&gw, &format!("/admin/v1/orgs/{org}/projects/{a}/routing"), rule).await;
    assert!(ask(&gw, &key_a, "q1", &[("cache-control", "no-cache, no-store")]).await.0, "the directives are ignored");

    // hits are in the usage ledger under provider `cache`, at no cost
    let hits = crate::budgets::ledger(&gw, &org, &format!("project={a}&provider=cache"), 3).await;
    assert_eq!(hits["cost_micro_usd"], json!(0), "{hits}");
    assert!(hits["completion_tokens"].as_u64().unwrap() > 0, "the kept answer's tokens are recorded: {hits}");
    // and audited as hits
    let (_, trail) = as_root(&gw, Method::GET, &format!("/admin/v1/audit?org={org}&limit=200"), None).await;
    let audited = trail["data"].as_array().unwrap().iter().filter(|e| e["cache"] == "hit").count();
    assert!(audited >= 2, "{trail}");
}

#[tokio::test]
async fn a_complete_stream_is_kept_and_replayed_as_a_stream_and_entries_expire() {
    let fake = FakeProvider::spawn().await;
    fake.set(Behavior::Reply { text: "streamed once, replayed after".into(), tool_args: None, chunk: 6 });
    let gw = gateway_with(&fake).await;
    let (org, a, key) = project(&gw, "s").await;
    put(&gw, &format!("/admin/v1/orgs/{org}/projects/{a}/routing"), json!({"cache_ttl_seconds": 2})).await;
    let stream = || async {
        let body = json!({"model": "fake-model", "stream": true, "messages": [{"role": "user", "content": "s"}]});
        let resp =
            gw.http.post(format!("{}/v1/chat/completions", gw.data_url)).bearer_auth(&key).json(&body).send().await;
        let resp = resp.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let hit = resp.headers().get("x-gatehouse-cache").is_some();
        (hit, resp.text().await.unwrap())
    };
    let calls = fake.calls();
    let (hit, first) = stream().await;
    assert!(!hit);
    let (hit, second) = stream().await;
    assert!(hit, "the completed stream was kept");
    assert_eq!(fake.calls() - calls, 1);
    let (text, _, _, _) = openai_stream(&second);
    assert_eq!(text, "streamed once, replayed after");
    assert_eq!(openai_stream(&first).0, text);
    assert!(second.trim_end().ends_with("data: [DONE]"));
    // a whole request for the same prompt is another entry
    assert!(!ask(&gw, &key, "s", &[]).await.0);

    // a stream cut before its end is not kept
    fake.set(Behavior::Disconnect);
    let body = json!({"model": "fake-model", "stream": true, "messages": [{"role": "user", "content": "cut"}]});
    for _ in 0..2 {
        let resp = gw.http.post(format!("{}/v1/chat/completions", gw.data_url)).bearer_auth(&key).json(&body).send();
        let resp = resp.await.unwrap();
        assert!(resp.headers().get("x-gatehouse-cache").is_none());
        let _ = resp.text().await;
    }

    // entries live for the TTL only
    fake.set(Behavior::Ok);
    assert!(!ask(&gw, &key, "ttl", &[]).await.0);
    assert!(ask(&gw, &key, "ttl", &[]).await.0);
    assert!(
        eventually(Duration::from_secs(10), || async { !ask(&gw, &key, "ttl", &[]).await.0 }).await,
        "an entry past its TTL is not served"
    );
}

/// `redis-cli` against the test's own Redis.
async fn redis_cli(port: u16, args: &[&str]) -> Vec<u8> {
    let out = tokio::process::Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("redis-cli: {e}"));
    out.stdout
}

async fn cache_keys(port: u16) -> Vec<String> {
    let out = redis_cli(port, &["--scan", "--pattern", "*:cache:*"]).await;
    String::from_utf8_lossy(&out).lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn with_redis_entries_are_shared_sealed_per_org_and_a_redis_outage_is_a_miss() {
    let Some(mut redis) = crate::limits::OwnRedis::any().await else {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "redis-server is required under CI=true");
        return;
    };
    let fake = FakeProvider::spawn().await;
    let canary = "a plaintext answer CANARY-7d1e";
    fake.set(Behavior::Reply { text: canary.into(), tool_args: None, chunk: 8 });
    let url = format!("redis://127.0.0.1:{}/0", redis.port);
    let replica = |dir: Option<tempfile::TempDir>| {
        let mut b = crate::common::gateway()
            .config(&crate::common::upstream_config(&fake))
            .config("[redis]\nurl = \"env:GH_TEST_REDIS\"\ntimeout_ms = 200\n")
            .env("FAKE_UPSTREAM_KEY", crate::common::PROVIDER_SECRET)
            .env("GH_TEST_REDIS", &url);
        if let Some(d) = dir {
            b = b.data_dir(d);
        }
        b.spawn()
    };
    let gw = replica(None).await;
    let (org, a, key_a) = project(&gw, "a").await;
    put(&gw, &format!("/admin/v1/orgs/{org}/projects/{a}/routing"), json!({"cache_ttl_seconds": 300})).await;
    let (st, b) = as_root(&gw, Method::POST, "/admin/v1/orgs", Some(json!({"name": "b"}))).await;
    assert_eq!(st, 201);
    let b = b["id"].as_str().unwrap().to_owned();
    as_root(&gw, Method::POST, &format!("/admin/v1/orgs/{b}/projects"), Some(json!({"name": "p"}))).await;
    let (_, key_b) = gw.create_key(json!({"name": "b", "org": "b", "project": "p"})).await;
    put(&gw, &format!("/admin/v1/orgs/{b}/routing"), json!({"cache_ttl_seconds": 300})).await;

    // kept in Redis (written behind the answer), sealed: the answer is not in it in the clear
    assert!(!ask(&gw, &key_a, "q", &[]).await.0);
    assert!(eventually(Duration::from_secs(10), || async { cache_keys(redis.port).await.len() == 1 }).await);
    let ka = cache_keys(redis.port).await.remove(0);
    let stored = redis_cli(redis.port, &["--no-raw", "GET", &ka]).await;
    assert!(stored.len() > canary.len(), "an entry is stored");
    assert!(!String::from_utf8_lossy(&stored).contains("CANARY"), "sealed at rest");
    assert!(!ask(&gw, &key_b, "q", &[]).await.0, "org b asks the same: its own entry");
    assert!(eventually(Duration::from_secs(10), || async { cache_keys(redis.port).await.len() == 2 }).await);
    let kb = cache_keys(redis.port).await.into_iter().find(|k| *k != ka).unwrap();

    // another process (as another replica would) is served from Redis
    let gw = replica(Some(gw.stop().await)).await;
    let calls = fake.calls();
    let (hit, text) = ask(&gw, &key_a, "q", &[]).await;
    assert!(hit && text == canary && fake.calls() == calls, "served from Redis");

    // org b's entry moved under org a's key does not open for a (a fresh process: nothing
    // in front): the provider answers
    redis_cli(redis.port, &["RENAME", &kb, &ka]).await;
    let gw = replica(Some(gw.stop().await)).await;
    let (hit, text) = ask(&gw, &key_a, "q", &[]).await;
    assert!(!hit && text == canary, "another tenant's entry is never served");
    assert_eq!(fake.calls() - calls, 1);

    // Redis down: the cache fails open to the provider
    redis.kill().await;
    let calls = fake.calls();
    for q in ["q2", "q3"] {
        let (hit, text) = ask(&gw, &key_a, q, &[]).await;
        assert!(!hit && text == canary);
    }
    assert_eq!(fake.calls() - calls, 2);
}

#[tokio::test]
async fn a_model_may_keep_its_answers_shorter_or_never() {
    let fake = FakeProvider::spawn().await;
    let models = "[[models]]\nname = \"never-cached\"\nprovider = \"fake\"\ncache_ttl_seconds = 0\n";
    let gw = crate::common::gateway()
        .config(&format!("{}\n{models}", crate::common::upstream_config(&fake)))
        .env("FAKE_UPSTREAM_KEY", crate::common::PROVIDER_SECRET)
        .spawn()
        .await;
    let (org, a, key) = project(&gw, "m").await;
    put(&gw, &format!("/admin/v1/orgs/{org}/projects/{a}/routing"), json!({"cache_ttl_seconds": 300})).await;
    let ask_model = |model: &'static str| hit_for(&gw, &key, model);
    assert!(!ask_model("fake-model").await);
    assert!(ask_model("fake-model").await, "the tenant's TTL");
    let calls = fake.calls();
    assert!(!ask_model("never-cached").await);
    assert!(!ask_model("never-cached").await, "the model's 0 wins over the tenant's TTL");
    assert_eq!(fake.calls() - calls, 2);
}

#[tokio::test]
async fn answers_that_may_depend_on_the_caller_or_came_from_a_fallback_model_are_not_kept() {
    let (plain, signed, backup) =
        (FakeProvider::spawn().await, FakeProvider::spawn().await, FakeProvider::spawn().await);
    let provider = |name: &str, fake: &FakeProvider, extra: &str| {
        format!(
            "[[providers]]\nname = \"{name}\"\nkind = \"openai_compatible\"\nbase_url = \"{}\"\n\
             api_key = \"env:FAKE_UPSTREAM_KEY\"\nfirst_byte_timeout_ms = 1500\n{extra}\n",
            fake.base_url()
        )
    };
    let config = format!(
        "{}{}{}\
         [[models]]\nname = \"personal\"\nprovider = \"signed\"\n\n\
         [[models]]\nname = \"primary\"\nprovider = \"plain\"\nfallbacks = [\"spare\"]\n\n\
         [[models]]\nname = \"spare\"\nprovider = \"backup\"\ncache_ttl_seconds = 0\n",
        provider("plain", &plain, ""),
        provider("signed", &signed, "identity_key_id = \"k1\"\nidentity_key = \"env:IDENTITY_KEY\""),
        provider("backup", &backup, ""),
    );
    let gw = crate::common::gateway()
        .config(&config)
        .env("FAKE_UPSTREAM_KEY", crate::common::PROVIDER_SECRET)
        .env("IDENTITY_KEY", "an-identity-signing-key-of-32-bytes-or-more")
        .spawn()
        .await;
    let (org, a, key) = project(&gw, "p").await;
    put(&gw, &format!("/admin/v1/orgs/{org}/projects/{a}/routing"), json!({"cache_ttl_seconds": 300})).await;
    let ask_model = |model: &'static str| hit_for(&gw, &key, model);
    // a provider told who asks may answer each caller its own way: never kept
    for _ in 0..2 {
        assert!(!ask_model("personal").await);
    }
    assert_eq!(signed.calls(), 2);
    // the primary fails, its fallback model (which is never cached) answers: not kept under
    // the primary's key either
    plain.set(Behavior::Status(503));
    for _ in 0..2 {
        assert!(!ask_model("primary").await);
    }
    assert_eq!(backup.calls(), 2, "each request reached the fallback model");
    plain.set(Behavior::Ok);
    assert!(!ask_model("primary").await);
    assert!(ask_model("primary").await, "the primary's own answer is kept");
}
