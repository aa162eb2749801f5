//! Data-plane CORS per project (issue #22): a project lists the exact browser origins whose
//! pages may read the data plane's answers to its credentials. Preflights answer for any origin
//! some project lists; each answer is readable only by its own project's origins.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{as_root, gateway, new_org};

const APP: &str = "https://app.example";

fn acao(h: &reqwest::header::HeaderMap) -> Option<&str> {
    h.get("access-control-allow-origin").and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn a_projects_origins_read_its_answers_and_no_other_origin_does() {
    let gw = gateway().spawn().await;
    let acme = new_org(&gw, "acme").await;
    let (st, web) = as_root(
        &gw,
        Method::POST,
        &format!("/admin/v1/orgs/{acme}/projects"),
        Some(json!({
            "name": "web", "cors_origins": ["HTTPS://App.Example:443/", APP]
        })),
    )
    .await;
    assert_eq!(st, 201, "{web}");
    assert_eq!(web["cors_origins"], json!([APP]), "normalized, deduplicated");
    let (st, other) =
        as_root(&gw, Method::POST, &format!("/admin/v1/orgs/{acme}/projects"), Some(json!({"name": "batch"}))).await;
    assert_eq!(st, 201, "{other}");
    let key_in = |project: &str| {
        let body = json!({"name": format!("{project}-key"), "org": "acme", "project": project});
        let gw = &gw;
        async move {
            let (st, k) = as_root(gw, Method::POST, "/admin/v1/keys", Some(body)).await;
            assert_eq!(st, 201, "{k}");
            k["key"].as_str().unwrap().to_owned()
        }
    };
    let (web_key, batch_key) = (key_in("web").await, key_in("batch").await);
    let chat = json!({"model": "mock", "messages": [{"role": "user", "content": "hi"}]});
    let post = |key: &str, origin: &str| {
        gw.http
            .post(format!("{}/v1/chat/completions", gw.data_url))
            .bearer_auth(key)
            .header("origin", origin)
            .json(&chat)
            .send()
    };

    // the preflight: within the reload interval, for the listed origin only
    let preflight = |origin: &'static str| {
        let req = gw
            .http
            .request(Method::OPTIONS, format!("{}/v1/chat/completions", gw.data_url))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type, x-stainless-os");
        async move { req.send().await.unwrap() }
    };
    let granted = gatehouse_testkit::eventually(Duration::from_secs(5), || async {
        acao(preflight(APP).await.headers()) == Some(APP)
    });
    assert!(granted.await, "the preflight for a listed origin is granted within seconds");
    let resp = preflight(APP).await;
    let h = resp.headers();
    assert_eq!(resp.status().as_u16(), 204);
    assert_eq!(h["access-control-allow-methods"], "GET, POST");
    assert_eq!(h["access-control-allow-headers"], "authorization, content-type, x-stainless-os");
    assert!(!h.contains_key("access-control-allow-credentials"));
    let refused = preflight("https://evil.example").await;
    assert_eq!(refused.status().as_u16(), 403);
    assert_eq!(acao(refused.headers()), None);

    // the answer: readable by the key's own project's origin, never by another
    let resp = post(&web_key, APP).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(acao(resp.headers()), Some(APP));
    assert!(resp.headers()["access-control-expose-headers"].to_str().unwrap().contains("x-request-id"));
    assert!(resp.headers().get_all("vary").iter().any(|v| v == "origin"));
    assert!(!resp.headers().contains_key("access-control-allow-credentials"));
    let resp = post(&web_key, "https://evil.example").await.unwrap();
    assert_eq!((resp.status().as_u16(), acao(resp.headers())), (200, None));
    let resp = post(&batch_key, APP).await.unwrap();
    assert_eq!((resp.status().as_u16(), acao(resp.headers())), (200, None), "another project's key: not readable");
    // a refusal after the key is known is readable (the app can show it); before, it is not
    let bad = json!({"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]});
    let resp = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.data_url))
        .bearer_auth(&web_key)
        .header("origin", APP)
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!((resp.status().as_u16(), acao(resp.headers())), (404, Some(APP)));
    let resp = post("gth_not-a-real-key", APP).await.unwrap();
    assert_eq!((resp.status().as_u16(), acao(resp.headers())), (401, None));
    // the Anthropic Messages API answers the same way
    let resp = gw
        .http
        .post(format!("{}/v1/messages", gw.data_url))
        .header("x-api-key", &web_key)
        .header("anthropic-version", "2023-06-01")
        .header("origin", APP)
        .json(&json!({"model": "mock", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!((resp.status().as_u16(), acao(resp.headers())), (200, Some(APP)));

    // taking the origin away: answers stop being readable, then preflights stop
    let path = format!("/admin/v1/orgs/{acme}/projects/{}", web["id"].as_str().unwrap());
    assert_eq!(as_root(&gw, Method::PATCH, &path, Some(json!({"name": "web"}))).await.0, 200);
    let stopped = gatehouse_testkit::eventually(Duration::from_secs(5), || async {
        acao(post(&web_key, APP).await.unwrap().headers()).is_none() && acao(preflight(APP).await.headers()).is_none()
    });
    assert!(stopped.await);
}

#[tokio::test]
async fn cors_origins_are_exact_origins_never_wildcards() {
    let gw = gateway().spawn().await;
    let acme = new_org(&gw, "acme").await;
    let path = format!("/admin/v1/orgs/{acme}/projects");
    for bad in [
        json!(["*"]),
        json!(["null"]),
        json!(["https://*.example.com"]),
        json!(["https://app.example/path"]),
        json!(["https://user:pw@app.example"]),
        json!(["ftp://app.example"]),
        json!([]),
        Value::Array((0..17).map(|i| json!(format!("https://a{i}.example"))).collect()),
    ] {
        let (st, v) = as_root(&gw, Method::POST, &path, Some(json!({"name": "web", "cors_origins": bad}))).await;
        assert_eq!((st, v["error"]["param"].as_str()), (400, Some("cors_origins")), "{bad}: {v}");
    }
}
