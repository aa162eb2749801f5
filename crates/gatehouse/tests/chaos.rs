//! The chaos test of issue #18 (docs/ROUTING.md, "Chaos"): the real binary, one model over four
//! deployments (three fake providers whose behaviour changes on a schedule, and one where
//! nothing listens), 50 clients for 30 s (`GATEHOUSE_CHAOS_SECS`), half of them streaming.
//! Every request must succeed or fail with a documented code within its deadline; no stream
//! may be duplicated or spliced; what the providers began answering must equal the usage
//! ledger, the ledger the budgets' spend; retries must stay within the retry budget.

#![expect(clippy::unwrap_used, clippy::panic, reason = "test code: fail loudly")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gatehouse_testkit::{Behavior, FAKE_REPLY, FakeProvider, REPLY_CANARY, TestGateway, eventually};
use reqwest::Method;
use serde_json::{Value, json};

const SECRET: &str = "sk-chaos-provider-secret";
const CLIENTS: usize = 50;
/// The deadline every client gives (as the SDKs do, in seconds).
const CLIENT_DEADLINE_SECS: u64 = 20;

fn config(a: &str, b: &str, c: &str) -> String {
    let provider = |name: &str, url: &str| {
        format!(
            "[[providers]]\nname = \"{name}\"\nbase_url = \"{url}\"\napi_key = \"env:K\"\nconnect_timeout_ms = 300\n\
             first_byte_timeout_ms = 2000\nidle_timeout_ms = 1000\nmax_stream_duration_ms = 10000\n\
             breaker_failures = 5\nbreaker_cooldown_ms = 1000\n"
        )
    };
    format!(
        "{}{}{}{}
[[models]]
name = \"m\"
provider = \"a\"
retries = 2
retry_budget = 0.2

[[models.deployments]]
provider = \"b\"

[[models.deployments]]
provider = \"dead\"

[[models.deployments]]
provider = \"c\"
priority = 1

[prices.\"m\"]
input_per_mtok = 1.0
output_per_mtok = 2.0
",
        provider("a", a),
        provider("b", b),
        provider("c", c),
        // nothing listens on port 9 here: every attempt is a refused connection
        provider("dead", "http://127.0.0.1:9/v1"),
    )
}

/// Each provider walks its own schedule, one step every 400 ms: every failure of the issue's
/// list, between answers.
fn schedule(which: usize) -> Vec<Behavior> {
    use Behavior::*;
    let steps = vec![
        Ok,
        Status(429),
        Ok,
        Status(500),
        Latency(Duration::from_millis(200)),
        Status(502),
        Ok,
        Status(503),
        Hang,
        Status(529),
        Disconnect,
        Ok,
        Stall,
    ];
    let n = steps.len();
    // out of phase, so some deployment is usually well
    (0..n).map(|i| steps[(i + which * 4) % n].clone()).collect()
}

#[derive(Default)]
struct Tally {
    statuses: BTreeMap<String, u64>,
    requests: u64,
    streams_ok: u64,
    streams_broken: u64,
    slowest: Duration,
}

/// The canonical streamed text of the fake provider (`tok0 .. tok7`, the canary first).
fn canonical() -> String {
    (0..8).map(|i| format!("{}tok{i} ", if i == 0 { REPLY_CANARY } else { "" })).collect()
}

/// Checks one stream: one upstream's events, in order, never repeated or mixed with another's;
/// `[DONE]` at most once and last; a broken stream ends with an error event. Returns whether it
/// completed.
fn check_stream(body: &str) -> bool {
    let lines: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    let done = lines.iter().filter(|l| **l == "[DONE]").count();
    assert!(done <= 1 && (done == 0 || lines.last() == Some(&"[DONE]")), "one [DONE], last: {body}");
    let (mut text, mut errored) = (String::new(), false);
    for l in lines.iter().filter(|l| **l != "[DONE]") {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(!errored, "nothing after an error event: {body}");
        if v.get("error").is_some() {
            errored = true;
            continue;
        }
        if let Some(c) = v["choices"].get(0) {
            text.push_str(c["delta"]["content"].as_str().unwrap_or_default());
        }
    }
    if done == 1 {
        assert_eq!(text, canonical(), "a completed stream is the provider's one answer: {body}");
        return true;
    }
    assert!(errored, "a stream that did not complete says so: {body}");
    // a stall sends one event and goes silent; a disconnect two of the usual, then closes
    assert!(text == "ok " || canonical().starts_with(&text), "a prefix of one answer, not a splice: {body}");
    false
}

async fn client(gw: Arc<TestGateway>, key: String, n: usize, stop: Arc<AtomicBool>) -> Tally {
    let mut t = Tally::default();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let stream = (n + i).is_multiple_of(2);
        i += 1;
        let body = json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hello"}]});
        let started = Instant::now();
        let resp = gw
            .http
            .post(format!("{}/v1/chat/completions", gw.data_url))
            .bearer_auth(&key)
            .header("x-stainless-timeout", CLIENT_DEADLINE_SECS.to_string())
            .timeout(Duration::from_secs(CLIENT_DEADLINE_SECS + 10))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("the gateway always answers: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let took = started.elapsed();
        t.slowest = t.slowest.max(took);
        assert!(took < Duration::from_secs(CLIENT_DEADLINE_SECS + 2), "within the deadline: {took:?}");
        t.requests += 1;
        let label = match status {
            200 if stream => {
                if check_stream(&text) {
                    t.streams_ok += 1;
                } else {
                    t.streams_broken += 1;
                }
                "200".to_owned()
            }
            200 => {
                let v: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(v["choices"][0]["message"]["content"], FAKE_REPLY);
                "200".to_owned()
            }
            _ => {
                let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {status} {text}"));
                let code = v["error"]["code"].as_str().unwrap_or_default().to_owned();
                let documented = matches!(
                    (status, code.as_str()),
                    (429, "upstream_rate_limited") | (502, "upstream_error") | (504, "upstream_timeout")
                );
                assert!(documented, "a documented failure: {status} {text}");
                assert!(!text.contains("upstream says no"), "the provider's body never passes");
                format!("{status} {code}")
            }
        };
        *t.statuses.entry(label).or_default() += 1;
    }
    t
}

async fn admin(gw: &TestGateway, method: Method, path: &str, body: Option<Value>) -> Value {
    let resp = gw.admin(method, path, body.as_ref()).await;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_through_a_failing_fleet_get_one_answer_or_a_documented_error_and_pay_once() {
    let secs: u64 = std::env::var("GATEHOUSE_CHAOS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let fakes = [FakeProvider::spawn().await, FakeProvider::spawn().await, FakeProvider::spawn().await];
    let cfg = config(&fakes[0].base_url(), &fakes[1].base_url(), &fakes[2].base_url());
    let gw = TestGateway::builder(env!("CARGO_BIN_EXE_gatehouse")).config(&cfg).env("K", SECRET).spawn().await;

    // one key in its own project, with a dollar and a token budget that the run cannot exhaust
    let org = admin(&gw, Method::GET, "/admin/v1/orgs", None).await["data"][0]["id"].as_str().unwrap().to_owned();
    let project = admin(&gw, Method::POST, &format!("/admin/v1/orgs/{org}/projects"), Some(json!({"name": "chaos"})))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, key) = gw.create_key(json!({"name": "chaos", "project": "chaos"})).await;
    let limits = format!("/admin/v1/orgs/{org}/projects/{project}/limits");
    let spec = json!({"budgets": [{"period": "monthly", "usd": 1000}, {"period": "monthly", "tokens": 1_000_000_000}]});
    admin(&gw, Method::PUT, &limits, Some(spec)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let fakes = Arc::new(fakes);
    let chaos = {
        let (fakes, stop) = (fakes.clone(), stop.clone());
        tokio::spawn(async move {
            let plans: Vec<Vec<Behavior>> = (0..3).map(schedule).collect();
            let mut step = 0usize;
            while !stop.load(Ordering::Relaxed) {
                for (f, plan) in fakes.iter().zip(&plans) {
                    f.set(plan[step % plan.len()].clone());
                }
                // the lowest tier is well more often than not
                if !step.is_multiple_of(3) {
                    fakes[2].set(Behavior::Ok);
                }
                step += 1;
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            for f in fakes.iter() {
                f.set(Behavior::Ok);
            }
        })
    };
    let gw = Arc::new(gw);
    let clients: Vec<_> =
        (0..CLIENTS).map(|n| tokio::spawn(client(gw.clone(), key.clone(), n, stop.clone()))).collect();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Tally::default();
    for c in clients {
        let t = c.await.unwrap();
        all.requests += t.requests;
        all.streams_ok += t.streams_ok;
        all.streams_broken += t.streams_broken;
        all.slowest = all.slowest.max(t.slowest);
        for (k, v) in t.statuses {
            *all.statuses.entry(k).or_default() += v;
        }
    }
    chaos.await.unwrap();

    // what the providers began answering is what the ledger holds, once each
    let served: usize = fakes.iter().map(FakeProvider::served).sum();
    let attempts: usize = fakes.iter().map(FakeProvider::calls).sum();
    let usage = format!("/admin/v1/orgs/{org}/usage?project={project}");
    let settled = eventually(Duration::from_secs(30), || async {
        admin(&gw, Method::GET, &usage, None).await["total"]["requests"] == json!(served)
    })
    .await;
    let ledger = admin(&gw, Method::GET, &usage, None).await["total"].clone();
    assert!(settled, "provider-side answers {served} == ledger rows: {ledger}");
    assert!(served > 0 && all.statuses.get("200").copied().unwrap_or(0) > 0, "some requests were served");

    // the budgets spent exactly what the ledger holds
    let standing = admin(&gw, Method::GET, &limits, None).await["standing"].clone();
    let tokens = ledger["prompt_tokens"].as_u64().unwrap() + ledger["completion_tokens"].as_u64().unwrap();
    let usd = standing.as_array().unwrap().iter().find(|s| s["unit"] == "usd").unwrap();
    let tok = standing.as_array().unwrap().iter().find(|s| s["unit"] == "tokens").unwrap();
    assert_eq!(tok["spent"], json!(tokens), "token budget == ledger: {standing}");
    assert_eq!(tok["reserved"], json!(0), "nothing left reserved: {standing}");
    let micro = (usd["spent"].as_f64().unwrap() * 1_000_000.0).round() as i64;
    assert_eq!(Some(micro), ledger["cost_micro_usd"].as_i64(), "dollar budget == ledger: {standing} {ledger}");

    // retries stay within the retry budget: 0.2 per request, plus the bucket's start and burst
    let retries = gw.metric("gatehouse_upstream_retries_total{model=\"m\"}").await;
    let mut fallbacks = 0.0;
    for p in ["a", "b", "c", "dead"] {
        fallbacks += gw.metric(&format!("gatehouse_upstream_fallbacks_total{{provider=\"{p}\"}}")).await;
    }
    let requests = all.requests as f64;
    assert!(retries <= 0.2 * requests + 12.0, "retries {retries} over the budget for {requests} requests");
    eprintln!(
        "\nchaos: {secs} s, {CLIENTS} clients, {} requests: {:?}; streams completed {}, broken off (reported in the stream) {}; \
         slowest {:?}; provider attempts {attempts} ({:.2} per request), answers begun {served} == ledger rows; \
         fallbacks {fallbacks}, retry rounds {retries} ({:.3} per request, budget 0.2); ledger tokens {tokens} == token budget, \
         {} micro-USD == dollar budget\n",
        all.requests,
        all.statuses,
        all.streams_ok,
        all.streams_broken,
        all.slowest,
        attempts as f64 / requests,
        retries / requests,
        ledger["cost_micro_usd"],
    );
}
