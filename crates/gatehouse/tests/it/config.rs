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

#[tokio::test]
async fn reload_applies_new_models_and_keeps_the_old_on_error() {
    let fake = FakeProvider::spawn().await;
    let gw = gateway().spawn().await;
    let key = gw.key().to_owned();
    let models = || async {
        let v = json(gw.get("/v1/models", Some(&key)).await).await;
        v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(models().await, ["mock", "mock-embedding"]);

    // add a provider and a model: picked up from the file without a signal
    gw.rewrite_config(&format!(
        "[[providers]]\nname = \"fake\"\nbase_url = \"{}\"\n[[models]]\nname = \"fresh\"\nprovider = \"fake\"\n",
        fake.base_url()
    ))
    .unwrap();
    assert!(eventually(Duration::from_secs(30), || async { models().await.contains(&"fresh".to_owned()) }).await);
    assert_eq!(gw.chat(&key, "fresh").await.status(), 200);

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
