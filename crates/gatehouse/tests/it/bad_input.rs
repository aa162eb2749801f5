//! Hostile and malformed input: every case a clear, fixed refusal; nothing reaches the provider.

use std::time::{Duration, Instant};

use gatehouse_testkit::FakeProvider;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{gateway, gateway_with, upstream_config};

async fn raw_post(gw: &gatehouse_testkit::TestGateway, key: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.data_url))
        .bearer_auth(key)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_refusal_is_a_fixed_openai_error() {
    let fake = FakeProvider::spawn().await;
    let gw = gateway()
        .config(&upstream_config(&fake))
        .config("[limits]\nmax_body_bytes = 4096\nmax_json_depth = 8\nmax_messages = 4\n")
        .env("FAKE_UPSTREAM_KEY", "sk-x")
        .spawn()
        .await;
    let k = gw.key();
    let msg = |n: usize| json!({"model": "fake-model", "messages": vec![json!({"role": "user", "content": "x"}); n]});
    let deep = format!(
        r#"{{"model":"fake-model","messages":[{{"role":"user","content":"x"}}],"x":{}1{}}}"#,
        "[".repeat(20),
        "]".repeat(20)
    );

    let cases: Vec<(&str, (u16, Value))> = vec![
        ("malformed_json", raw_post(&gw, k, "application/json", b"{\"model\": ".to_vec()).await),
        ("not_an_object", raw_post(&gw, k, "application/json", b"[1,2]".to_vec()).await),
        (
            "missing_model",
            raw_post(&gw, k, "application/json", br#"{"messages":[{"role":"user","content":"x"}]}"#.to_vec()).await,
        ),
        ("wrong_content_type", raw_post(&gw, k, "text/plain", serde_json::to_vec(&msg(1)).unwrap()).await),
        ("too_large", raw_post(&gw, k, "application/json", vec![b' '; 10_000]).await),
        ("too_deep", raw_post(&gw, k, "application/json", deep.into_bytes()).await),
        ("too_many_messages", raw_post(&gw, k, "application/json", serde_json::to_vec(&msg(5)).unwrap()).await),
        (
            "unknown_model",
            raw_post(
                &gw,
                k,
                "application/json",
                br#"{"model":"gpt-9","messages":[{"role":"user","content":"x"}]}"#.to_vec(),
            )
            .await,
        ),
        ("unknown_route", {
            let r = gw.get("/v1/nope", Some(k)).await;
            (r.status().as_u16(), r.json().await.unwrap())
        }),
        ("wrong_method", {
            let r = gw.get("/v1/chat/completions", Some(k)).await;
            (r.status().as_u16(), r.json().await.unwrap())
        }),
    ];
    insta::assert_json_snapshot!("refusals_over_http", cases);
    assert_eq!(fake.calls(), 0, "no malformed request reaches the provider");
}

#[tokio::test]
async fn refusals_do_not_echo_the_prompt_or_the_key() {
    let fake = FakeProvider::spawn().await;
    let gw = gateway_with(&fake).await;
    let canary = "CANARY-PROMPT-7f3a";
    let body = json!({"model": "unknown-model", "messages": [{"role": "user", "content": canary}]});
    let resp = gw.post("/v1/chat/completions", Some(gw.key()), &body).await;
    let text = resp.text().await.unwrap();
    assert!(!text.contains(canary));
    let wrong_key = format!("gth_{canary}");
    let resp = gw.post("/v1/chat/completions", Some(&wrong_key), &body).await;
    assert!(!resp.text().await.unwrap().contains(canary));
    // and a successful request leaves neither prompt nor key in the logs
    gw.post(
        "/v1/chat/completions",
        Some(gw.key()),
        &json!({"model": "fake-model", "messages": [{"role": "user", "content": canary}]}),
    )
    .await;
    let logs = gw.logs_once("request finished").await;
    assert!(logs.contains("request finished"), "audit lines are logged");
    assert!(!logs.contains(canary), "prompt content in logs");
    assert!(!logs.contains(gw.key()), "credential in logs");
    assert!(!logs.contains(crate::common::PROVIDER_SECRET), "provider secret in logs");
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let gw = gateway().server("header_read_timeout_ms = 500").spawn().await;
    let addr = gw.data_url.trim_start_matches("http://");
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    // the server must close the connection (or answer 408) instead of waiting forever
    let read = tokio::time::timeout(Duration::from_secs(5), sock.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "slowloris connection was held open");
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// The first answer to arrive on `sock` within `wait` (its head, at least the status line).
async fn answer(sock: &mut tokio::net::TcpStream, wait: Duration) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(wait, sock.read(&mut buf)).await.ok()?.ok()?;
    (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// `server.max_connections` bounds open connections, and with them requests in flight (HTTP/1
/// serves one request at a time per connection): one past the bound waits to be accepted and
/// is served as soon as a connection closes.
#[tokio::test]
async fn connections_beyond_the_bound_wait_until_one_closes() {
    let gw = gateway().server("max_connections = 2").spawn().await;
    let addr = gw.data_url.trim_start_matches("http://");
    let get = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        sock.write_all(get).await.unwrap();
        let head = answer(&mut sock, Duration::from_secs(10)).await.unwrap_or_default();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        open.push(sock); // kept alive: it holds its slot
    }
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    third.write_all(get).await.unwrap();
    assert_eq!(answer(&mut third, Duration::from_millis(800)).await, None, "served past the bound");
    drop(open.pop());
    let head = answer(&mut third, Duration::from_secs(10)).await.unwrap_or_default();
    assert!(head.starts_with("HTTP/1.1 200"), "the waiting connection is served once one closes: {head}");
}

#[tokio::test]
async fn a_lying_content_length_does_not_bypass_the_cap() {
    let gw = gateway().config("[limits]\nmax_body_bytes = 1024\n").spawn().await;
    let addr = gw.data_url.trim_start_matches("http://");
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        gw.key()
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 4000];
    sock.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await.unwrap();
    sock.write_all(&chunk).await.unwrap();
    sock.write_all(b"\r\n0\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
}

/// Sends a request head promising 1000 bytes, then trickles one byte every 300 ms; returns
/// the answer and how long it took.
async fn trickle(base: &str, path: &str, token: &str) -> ((u16, String), Duration) {
    let mut sock = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let (mut rd, mut wr) = sock.into_split();
    let writer = tokio::spawn(async move {
        for _ in 0..999 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if wr.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut buf)).await;
    writer.abort();
    (crate::common::parse_response(&buf), started.elapsed())
}

#[tokio::test]
async fn a_trickled_body_is_answered_408_on_both_planes() {
    // 3 bytes a second against a floor of 100: cut soon after the 1 s grace, long before the
    // 60 s deadline
    let gw = gateway().server("body_read_timeout_ms = 60000\nbody_min_bytes_per_second = 100").spawn().await;
    let root = crate::common::root(&gw);
    for (base, path, token) in
        [(&gw.data_url, "/v1/chat/completions", gw.key()), (&gw.admin_url, "/admin/v1/orgs", root.as_str())]
    {
        let ((status, body), took) = trickle(base, path, token).await;
        assert_eq!(status, 408, "{path}: {body}");
        assert!(body.contains("\"request_timeout\""), "{body}");
        assert!(took < Duration::from_secs(15), "{path} held for {took:?}");
    }
}

#[tokio::test]
async fn the_body_deadline_holds_without_a_rate_floor() {
    let gw = gateway().server("body_read_timeout_ms = 1500\nbody_min_bytes_per_second = 0").spawn().await;
    let ((status, body), took) = trickle(&gw.data_url, "/v1/chat/completions", gw.key()).await;
    assert_eq!(status, 408, "{body}");
    assert!(took >= Duration::from_millis(1400) && took < Duration::from_secs(15), "{took:?}");
    // an ordinary request still passes under the same settings
    assert_eq!(gw.chat(gw.key(), "mock").await.status(), 200);
}

#[tokio::test]
async fn admin_bodies_are_capped_at_64_kib_and_eight_levels() {
    let gw = gateway().spawn().await;
    let root = crate::common::root(&gw);
    let post = |body: Vec<u8>| {
        let (http, url, root) = (gw.http.clone(), format!("{}/admin/v1/orgs", gw.admin_url), root.clone());
        async move {
            let r = http.post(url).bearer_auth(root).header("content-type", "application/json").body(body).send().await;
            let r = r.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // just under the cap: read whole, then refused for what it says (a name that long)
    let under = format!("{{\"name\": \"{}\"}}", "a".repeat(64 * 1024 - 20));
    assert!(under.len() <= 64 * 1024);
    let (status, v) = post(under.into_bytes()).await;
    assert_eq!((status, v["error"]["code"].as_str()), (400, Some("invalid_request")), "{v}");
    // one byte over: 413 before parsing, by Content-Length and by streamed bytes alike
    let over = format!("{{\"name\": \"{}\"}}", "a".repeat(64 * 1024));
    let (status, v) = post(over.clone().into_bytes()).await;
    assert_eq!((status, v["error"]["code"].as_str()), (413, Some("request_too_large")), "{v}");
    let chunked = reqwest::Body::wrap_stream(futures_util::stream::iter(
        over.into_bytes().chunks(4096).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>(),
    ));
    let r = gw
        .http
        .post(format!("{}/admin/v1/orgs", gw.admin_url))
        .bearer_auth(&root)
        .header("content-type", "application/json")
        .body(chunked)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413, "no Content-Length: counted while reading");
    // nine levels of nesting: refused before serde builds anything
    let deep = format!("{{\"name\": {}1{}}}", "[".repeat(9), "]".repeat(9));
    let (status, v) = post(deep.into_bytes()).await;
    assert_eq!((status, v["error"]["code"].as_str()), (400, Some("request_too_large")), "{v}");
}

/// The body is read only after authentication: a request without a valid credential is
/// answered 401 while its promised body has not even been sent.
#[tokio::test]
async fn an_unauthenticated_request_is_refused_before_its_body_is_read() {
    let gw = gateway().spawn().await;
    for auth in ["", "Authorization: Bearer gth_wrong\r\n"] {
        let mut sock = tokio::net::TcpStream::connect(gw.data_url.trim_start_matches("http://")).await.unwrap();
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\nContent-Length: 4000000\r\n\r\n"
        );
        sock.write_all(head.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut buf)).await.expect("answered").unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 401"), "{auth:?}: {text}");
    }
}
