//! Config files: examples validate, errors are precise and never echo values, reloads apply
//! the dynamic part and keep the old snapshot on any failure.

use std::path::PathBuf;
use std::time::Duration;

use gatehouse_testkit::{FakeProvider, eventually};

use crate::common::{gateway, json};

fn validate(path: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse")).arg("validate").arg(path).env_clear().output().unwrap()
}

#[test]
fn every_example_config_validates() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = validate(&path);
            assert!(out.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
            n += 1;
        }
    }
    assert!(n >= 3, "examples/ should hold example configs");
}

#[test]
fn validate_reports_every_problem_without_values() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(
        &p,
        "[[providers]]\nname = \"x\"\nkind = \"openai\"\napi_key = \"sk-live-TOPSECRET\"\n[[models]]\nname = \"m\"\nprovider = \"nope\"\n",
    )
    .unwrap();
    let out = validate(&p);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("providers[0].api_key"), "{err}");
    assert!(err.contains("models[0].provider"), "{err}");
    assert!(!err.contains("TOPSECRET"), "{err}");
}

/// The models the gateway lists to its quick-start key.
async fn model_ids(gw: &gatehouse_testkit::TestGateway) -> Vec<String> {
    let v = json(gw.get("/v1/models", Some(gw.key())).await).await;
    v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn reload_applies_new_models_and_keeps_the_old_on_error() {
    let fake = FakeProvider::spawn().await;
    let gw = gateway().spawn().await;
    let models = || model_ids(&gw);
    assert_eq!(models().await, ["mock", "mock-embedding"]);

    // add a provider and a model: picked up from the file without a signal
    gw.rewrite_config(&format!(
        "[[providers]]\nname = \"fake\"\nbase_url = \"{}\"\n[[models]]\nname = \"fresh\"\nprovider = \"fake\"\n",
        fake.base_url()
    ))
    .unwrap();
    assert!(eventually(Duration::from_secs(30), || async { models().await.contains(&"fresh".to_owned()) }).await);
    assert_eq!(gw.chat(gw.key(), "fresh").await.status(), 200);

    // a broken file is rejected; the running config stays
    gw.rewrite_config("[[models]]\nname = \"broken\"\nprovider = \"missing\"\n").unwrap();
    gw.hangup();
    assert!(eventually(Duration::from_secs(30), || async { gw.logs().contains("config reload rejected") }).await);
    assert!(models().await.contains(&"fresh".to_owned()));

    // a secret reference that does not resolve is rejected at build time, before the swap
    gw.rewrite_config(&format!(
        "[[providers]]\nname = \"fake\"\nbase_url = \"{}\"\napi_key = \"env:NOT_SET_ANYWHERE\"\n[[models]]\nname = \"other\"\nprovider = \"fake\"\n",
        fake.base_url()
    ))
    .unwrap();
    assert!(eventually(Duration::from_secs(30), || async { gw.logs().contains("NOT_SET_ANYWHERE is not set") }).await);
    assert!(models().await.contains(&"fresh".to_owned()));
}

#[tokio::test]
async fn the_mock_provider_can_be_switched_off() {
    let gw = gateway().config("[mock]\nenabled = false\n").spawn().await;
    let models = json(gw.get("/v1/models", Some(gw.key())).await).await;
    assert_eq!(models["data"].as_array().unwrap().len(), 0);
    let r = gw.chat(gw.key(), "mock").await;
    assert_eq!(r.status(), 404);
}

/// A Kubernetes ConfigMap mount: `gatehouse.toml -> ..data/gatehouse.toml`, `..data ->
/// ..<version>`; an update writes a new version directory and swaps `..data` atomically, so
/// the file the gateway was pointed at never changes inode. Every reload attempt is audited.
#[cfg(unix)]
#[tokio::test]
async fn reload_follows_a_kubernetes_symlink_swap_and_audits_every_attempt() {
    use std::os::unix::fs::symlink;
    let fake = FakeProvider::spawn().await;
    let gw = gateway().spawn().await;
    let models = || model_ids(&gw);
    let dir = gw.config_path.parent().unwrap().to_owned();
    let original = std::fs::read_to_string(&gw.config_path).unwrap();
    let version = |name: &str, text: &str| {
        std::fs::create_dir(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join("gatehouse.toml"), text).unwrap();
    };
    let point_data_at = |name: &str| {
        let tmp = dir.join("..data_tmp");
        symlink(name, &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
    };
    // turn the plain file into the mount layout, same content (no reload: nothing changed)
    version("..v1", &original);
    point_data_at("..v1");
    let link = dir.join("gatehouse.toml.link");
    symlink("..data/gatehouse.toml", &link).unwrap();
    std::fs::rename(&link, &gw.config_path).unwrap();

    // the update: a new version with another provider and model, then the swap
    let fresh = format!(
        "{original}\n[[providers]]\nname = \"fake\"\nbase_url = \"{}\"\n[[models]]\nname = \"mock-alias\"\nprovider = \"fake\"\n",
        fake.base_url()
    );
    version("..v2", &fresh);
    point_data_at("..v2");
    assert!(
        eventually(Duration::from_secs(30), || async { models().await.contains(&"mock-alias".to_owned()) }).await,
        "the swap was not picked up: {:?}",
        models().await
    );
    // a broken version is rejected and the running config stays
    version("..v3", &format!("{fresh}\n[[models]]\nname = \"x\"\nprovider = \"missing\"\n"));
    point_data_at("..v3");
    assert!(eventually(Duration::from_secs(30), || async { gw.logs().contains("config reload rejected") }).await);
    assert!(models().await.contains(&"mock-alias".to_owned()));

    let audited = || async {
        let v = json(gw.admin(reqwest::Method::GET, "/admin/v1/audit?action=config.reload", None).await).await;
        v["data"].as_array().cloned().unwrap_or_default()
    };
    assert!(
        eventually(Duration::from_secs(30), || async {
            let events = audited().await;
            events.iter().any(|e| e["outcome"] == "allowed") && events.iter().any(|e| e["outcome"] == "denied")
        })
        .await,
        "{:?}",
        audited().await
    );
    let events = audited().await;
    assert!(events.iter().all(|e| e["actor"] == "system"), "{events:?}");
    assert!(events.iter().any(|e| e["code"] == "config_invalid"), "{events:?}");
}
