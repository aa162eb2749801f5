//! Master-key rotation (issue #19): every stored secret is re-sealed under the new key while a
//! gateway holding both keys keeps serving, `gatehouse master-key rotate` killed at any point
//! finishes when run again, and afterwards the new key alone opens everything: API keys and
//! admin tokens, stored provider credentials, capability tokens, webhook secrets, checkpoints.

use std::time::Duration;

use gatehouse_testkit::{FakeProvider, TestGateway};
use reqwest::Method;
use serde_json::json;
use tokio::io::AsyncBufReadExt;

use crate::common::{PROVIDER_SECRET, as_root, upstream_config};

const OLD: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const NEW: &str = "2222222222222222222222222222222222222222222222222222222222222222";
/// Orgs with a stored credential each: enough rows that a kill lands mid-rotation.
const ORGS: usize = 60;

fn builder(fake: &FakeProvider, keys: &[(&str, &str)]) -> gatehouse_testkit::GatewayBuilder {
    let mut b = crate::common::gateway().config(&upstream_config(fake)).env("FAKE_UPSTREAM_KEY", PROVIDER_SECRET);
    for (k, v) in keys {
        b = b.env(k, v);
    }
    b
}

/// `gatehouse master-key rotate` on the gateway's config with the given keys in the environment.
fn rotate_cmd(config: &std::path::Path, keys: &[(&str, &str)], check: bool) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.args(["master-key", "rotate", "--config"]).arg(config).env_clear();
    if check {
        cmd.arg("--check");
    }
    for (k, v) in keys {
        cmd.env(k, v);
    }
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).kill_on_drop(true);
    cmd
}

/// Whether the stored credential of `org` is what the provider sees for `key`'s requests.
async fn presents(gw: &TestGateway, fake: &FakeProvider, key: &str, secret: &str) -> bool {
    let st = gw.chat(key, "fake-model").await.status();
    let seen = fake.last_request().map(|r| r.headers).unwrap_or_default();
    st == 200 && seen.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {secret}"))
}

#[tokio::test]
async fn a_master_key_rotation_killed_anywhere_finishes_and_the_new_key_alone_opens_everything() {
    let fake = FakeProvider::spawn().await;
    let gw = builder(&fake, &[("GATEHOUSE_MASTER_KEY", OLD)]).spawn().await;
    let root = gw.admin_token.clone().unwrap();
    let quickstart = gw.key().to_owned();
    // stored under the old key: a credential per org, webhook secrets, a capability root key
    let mut orgs = Vec::new();
    for i in 0..ORGS {
        let (st, v) = as_root(&gw, Method::POST, "/admin/v1/orgs", Some(json!({"name": format!("o{i}")}))).await;
        assert_eq!(st, 201, "{v}");
        let org = v["id"].as_str().unwrap().to_owned();
        let body = json!({"provider": "fake", "secret": format!("sk-org-{i}"), "org": org});
        assert_eq!(as_root(&gw, Method::POST, "/admin/v1/credentials", Some(body)).await.0, 201);
        orgs.push(org);
    }
    let project = json!({"name": "p"});
    assert_eq!(as_root(&gw, Method::POST, &format!("/admin/v1/orgs/{}/projects", orgs[0]), Some(project)).await.0, 201);
    let (_, org_key) = gw.create_key(json!({"name": "k0", "org": "o0", "project": "p"})).await;
    for (i, org) in orgs.iter().take(3).enumerate() {
        let hook = json!({"name": format!("h{i}"), "kind": "generic", "url": "https://hooks.example.com/x",
                          "events": ["key.*"], "org": org});
        assert_eq!(as_root(&gw, Method::POST, "/admin/v1/webhooks", Some(hook)).await.0, 201);
    }
    let (st, cap) = as_root(
        &gw,
        Method::POST,
        "/admin/v1/capabilities",
        Some(json!({"name": "c", "scopes": ["chat:*"], "expires_in_seconds": 3600})),
    )
    .await;
    assert_eq!(st, 201, "{cap}");
    let token = cap["token"].as_str().unwrap().to_owned();
    let config = gw.config_path.clone();
    let dir = gw.stop().await;

    // the gateway restarts holding both keys and keeps serving while the rotation runs
    let both = [("GATEHOUSE_MASTER_KEY", NEW), ("GATEHOUSE_PREVIOUS_MASTER_KEY", OLD)];
    let gw = builder(&fake, &both).data_dir(dir).spawn().await;
    assert!(presents(&gw, &fake, &org_key, "sk-org-0").await, "the org's credential opens under the old key");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let serving = {
        let (http, url, stop) = (gw.http.clone(), gw.data_url.clone(), stop.clone());
        let keys = [org_key.clone(), token.clone()];
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for k in &keys {
                    let body = json!({"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]});
                    match http.post(format!("{url}/v1/chat/completions")).bearer_auth(k).json(&body).send().await {
                        Ok(r) if r.status() == 200 => ok += 1,
                        Ok(r) => failed.push(r.status().as_u16()),
                        Err(_) => failed.push(0),
                    }
                }
            }
            (ok, failed)
        })
    };

    let left = |out: &std::process::Output| -> usize {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("sk-org"), "no value is ever printed");
        text.lines()
            .filter(|l| l.ends_with("not under the current key alone"))
            .filter_map(|l| l.split(": ").nth(1)?.split(' ').next()?.parse::<usize>().ok())
            .sum()
    };
    let total = left(&rotate_cmd(&config, &both, true).output().await.unwrap());
    assert!(total > ORGS, "every sealed value is under the old key: {total}");

    // first killed as soon as it reports its first column done (surely mid-rotation), then at
    // points further and further in, until a run completes
    let (mut delay, mut kills, mut partial) = (Duration::ZERO, 0, false);
    let mut seed = 0x9e37_79b9_u32;
    loop {
        let mut child = rotate_cmd(&config, &both, false).spawn().unwrap();
        let ended = if kills == 0 {
            let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
            lines.next_line().await.unwrap().is_none().then(|| Ok(std::process::ExitStatus::default()))
        } else {
            tokio::time::timeout(delay, child.wait()).await.ok()
        };
        if let Some(status) = ended {
            let out = child.wait_with_output().await.unwrap();
            assert!(status.unwrap().success(), "rotate failed: {}", String::from_utf8_lossy(&out.stderr));
            break;
        }
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        kills += 1;
        // a kill that left some values re-sealed and some not: the rotation really was cut
        let n = left(&rotate_cmd(&config, &both, true).output().await.unwrap());
        partial |= n > 0 && n < total;
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        delay += Duration::from_micros(200 + u64::from(seed % 1300));
        assert!(kills < 500, "the rotation never completed");
    }
    assert!(kills > 0 && partial, "kills {kills}: at least one landed mid-rotation ({partial})");
    let check = rotate_cmd(&config, &both, true).output().await.unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    // run again: nothing left to do
    let again = rotate_cmd(&config, &both, false).output().await.unwrap();
    assert!(again.status.success() && String::from_utf8_lossy(&again.stdout).contains("re-sealed 0"));

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = serving.await.unwrap();
    assert!(ok > 0 && failed.is_empty(), "requests during the rotation: {ok} ok, failed {failed:?}");
    let dir = gw.stop().await;

    // the new key alone opens everything stored before the rotation
    let gw = builder(&fake, &[("GATEHOUSE_MASTER_KEY", NEW)]).data_dir(dir).spawn().await;
    assert!(presents(&gw, &fake, &org_key, "sk-org-0").await, "the org's credential opens under the new key");
    assert_eq!(gw.chat(&quickstart, "fake-model").await.status(), 200, "an API key from before the rotation");
    assert_eq!(gw.chat(&token, "fake-model").await.status(), 200, "a capability token from before the rotation");
    let (st, _) = crate::common::call(&gw, &root, Method::GET, "/admin/v1/orgs", None).await;
    assert_eq!(st, 200, "an admin token from before the rotation");
    let verify = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["audit", "verify", "--config"])
        .arg(&config)
        .env_clear()
        .env("GATEHOUSE_MASTER_KEY", NEW)
        .output()
        .await
        .unwrap();
    assert!(verify.status.success(), "checkpoints signed before the rotation verify: {verify:?}");
    // and the old key alone no longer opens the store
    let dir = gw.stop().await;
    let refused = builder(&fake, &[("GATEHOUSE_MASTER_KEY", OLD)]).data_dir(dir).start_error().await;
    assert!(refused.contains("does not open under the master key"), "{refused}");
}

#[tokio::test]
async fn with_the_generated_key_file_a_staged_key_takes_over_when_the_rotation_completes() {
    let fake = FakeProvider::spawn().await;
    let gw = builder(&fake, &[]).spawn().await;
    let key = gw.key().to_owned();
    let body = json!({"provider": "fake", "secret": "sk-platform-stored", "platform": true});
    assert_eq!(as_root(&gw, Method::POST, "/admin/v1/credentials", Some(body)).await.0, 201);
    assert!(
        gatehouse_testkit::eventually(Duration::from_secs(10), || presents(&gw, &fake, &key, "sk-platform-stored"))
            .await
    );
    let config = gw.config_path.clone();
    let data = gw.dir.as_ref().unwrap().path().join("data");
    let cli = |args: &[&str]| {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"));
        c.args(args).arg("--config").arg(&config).env_clear();
        c
    };
    let staged = cli(&["master-key", "stage"]).output().await.unwrap();
    assert!(staged.status.success(), "{staged:?}");
    let new_key = std::fs::read_to_string(data.join("master.key.next")).unwrap();
    let old_key = std::fs::read_to_string(data.join("master.key")).unwrap();
    assert_ne!(new_key, old_key);
    // staging twice keeps the first staged key
    assert!(cli(&["master-key", "stage"]).output().await.unwrap().status.success());
    assert_eq!(std::fs::read_to_string(data.join("master.key.next")).unwrap(), new_key);

    let dir = gw.stop().await;
    let gw = builder(&fake, &[]).data_dir(dir).spawn().await;
    assert!(gw.logs().contains("master-key rotation is under way"));
    assert!(presents(&gw, &fake, &key, "sk-platform-stored").await, "both keys open while staged");
    assert!(!cli(&["master-key", "rotate", "--check"]).output().await.unwrap().status.success(), "not rotated yet");
    let rotated = cli(&["master-key", "rotate"]).output().await.unwrap();
    assert!(rotated.status.success(), "{rotated:?}");
    assert!(!data.join("master.key.next").exists(), "the staged key took the old one's place");
    assert_eq!(std::fs::read_to_string(data.join("master.key")).unwrap(), new_key);
    assert_eq!(std::fs::read_to_string(data.join("master.key.previous")).unwrap(), old_key, "the old key is kept");
    assert!(presents(&gw, &fake, &key, "sk-platform-stored").await, "the running gateway still serves");
    assert!(!cli(&["master-key", "stage"]).output().await.unwrap().status.success(), "retire before the next rotation");

    // retired once every gateway runs with the new key: then the new key file alone opens it
    let dir = gw.stop().await;
    let retired = cli(&["master-key", "retire"]).output().await.unwrap();
    assert!(retired.status.success(), "{retired:?}");
    assert!(!data.join("master.key.previous").exists());
    let gw = builder(&fake, &[]).data_dir(dir).spawn().await;
    assert!(!gw.logs().contains("rotation is under way"));
    assert!(presents(&gw, &fake, &key, "sk-platform-stored").await, "the new key file alone opens it");
    assert!(cli(&["master-key", "rotate", "--check"]).output().await.unwrap().status.success());
    assert!(!cli(&["master-key", "retire"]).output().await.unwrap().status.success(), "nothing left to retire");
}
