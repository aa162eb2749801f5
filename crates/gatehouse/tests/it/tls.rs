//! TLS on both planes (`[tls.data]`, `[tls.control]`), with certificates made in the test:
//! what a client that trusts the CA gets, what one that does not gets, client certificates on
//! the control plane, certificates swapped on disk while the gateway runs, and files that
//! stop the start.

use std::path::Path;
use std::time::Duration;

use gatehouse_testkit::TestGateway;
use gatehouse_testkit::pki::{Ca, Front, Issued, TlsProxy, Validity};
use reqwest::Method;
use serde_json::json;

use crate::common::gateway;

/// A client that trusts only `ca` (and presents `identity`, if any), on fresh connections.
fn client(ca: &str, identity: Option<&Issued>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(ca.as_bytes()).unwrap())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30));
    if let Some(id) = identity {
        b = b.identity(reqwest::Identity::from_pem(id.identity_pem().as_bytes()).unwrap());
    }
    b.build().unwrap()
}

fn tls_section(plane: &str, dir: &Path, stem: &str, client_ca: Option<&Path>) -> String {
    let ca = client_ca.map(|p| format!("client_ca_file = \"{}\"\n", p.display())).unwrap_or_default();
    format!(
        "[tls.{plane}]\ncert_file = \"{}\"\nkey_file = \"{}\"\n{ca}",
        dir.join(format!("{stem}.crt")).display(),
        dir.join(format!("{stem}.key")).display()
    )
}

async fn chat_status(http: &reqwest::Client, gw: &TestGateway) -> Result<u16, reqwest::Error> {
    let body = json!({"model": "mock", "messages": [{"role": "user", "content": "hello"}]});
    let resp =
        http.post(format!("{}/v1/chat/completions", gw.data_url)).bearer_auth(gw.key()).json(&body).send().await?;
    Ok(resp.status().as_u16())
}

#[tokio::test]
async fn both_planes_speak_tls_and_the_control_plane_wants_a_client_certificate() {
    let files = tempfile::tempdir().unwrap();
    let (ca, clients, rogue) = (Ca::new("ops"), Ca::new("operators"), Ca::new("rogue"));
    ca.server(&["127.0.0.1", "localhost"], Validity::Current).write(files.path(), "server");
    std::fs::write(files.path().join("clients.pem"), &clients.pem).unwrap();
    let config = format!(
        "{}{}",
        tls_section("data", files.path(), "server", None),
        tls_section("control", files.path(), "server", Some(&files.path().join("clients.pem")))
    );
    let mut gw = gateway().config(&config).spawn().await;
    assert!(gw.data_url.starts_with("https://") && gw.admin_url.starts_with("https://"), "{}", gw.data_url);

    // the data plane: a client that trusts the CA is served, with HSTS
    let trusting = client(&ca.pem, None);
    let body = json!({"model": "mock", "messages": [{"role": "user", "content": "hello"}]});
    let resp = trusting
        .post(format!("{}/v1/chat/completions", gw.data_url))
        .bearer_auth(gw.key())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["strict-transport-security"], "max-age=31536000");
    // one that trusts another CA, or speaks plain HTTP to the port, gets nothing
    let e = chat_status(&client(&rogue.pem, None), &gw).await.unwrap_err();
    assert!(e.is_connect(), "{e:?}");
    let plain = gw.data_url.replacen("https://", "http://", 1);
    let e = gw.http.get(format!("{plain}/healthz")).send().await;
    assert!(e.is_err() || e.is_ok_and(|r| r.status() == 400), "plain HTTP is not served on a TLS port");

    // the control plane: no client certificate, or one from another CA, fails the handshake
    for id in [None, Some(rogue.client("mallory"))] {
        let e = client(&ca.pem, id.as_ref()).get(format!("{}/healthz", gw.admin_url)).send().await;
        assert!(e.is_err(), "{e:?}");
    }
    // an operator's certificate opens the connection; the admin token is still required
    let operator = client(&ca.pem, Some(&clients.client("alice")));
    let resp = operator.get(format!("{}/admin/v1/orgs", gw.admin_url)).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["strict-transport-security"], "max-age=31536000");
    gw.http = operator;
    let resp = gw.admin(Method::GET, "/admin/v1/orgs", None).await;
    assert_eq!(resp.status(), 200);
    assert!(gw.metric("gatehouse_tls_handshake_failures_total{plane=\"control\"}").await >= 2.0);
    let not_after = gw.metric("gatehouse_tls_certificate_not_after_timestamp_seconds{plane=\"data\"}").await;
    assert!(not_after > 1.7e9, "{not_after}");
}

#[tokio::test]
async fn a_certificate_changed_on_disk_is_served_and_a_bad_one_leaves_the_last_good_in_service() {
    let files = tempfile::tempdir().unwrap();
    let (first, second) = (Ca::new("first"), Ca::new("second"));
    first.server(&["127.0.0.1"], Validity::Current).write(files.path(), "server");
    let config = format!("[tls]\nreload_interval_ms = 100\n{}", tls_section("data", files.path(), "server", None));
    let gw = gateway().config(&config).spawn().await;
    assert_eq!(chat_status(&client(&first.pem, None), &gw).await.unwrap(), 200);

    // the operator's certificate manager writes a new certificate from another CA
    second.server(&["127.0.0.1"], Validity::Current).write(files.path(), "server");
    let renewed = client(&second.pem, None);
    let switched =
        gatehouse_testkit::eventually(Duration::from_secs(10), || async { chat_status(&renewed, &gw).await.is_ok() })
            .await;
    assert!(switched, "new connections get the new certificate");
    assert!(chat_status(&client(&first.pem, None), &gw).await.is_err());

    // then one that is expired, one for another host name, and a key that does not fit: each
    // is refused and the one in service stays
    let mismatched = second.server(&["127.0.0.1"], Validity::Current);
    let bad = [
        second.server(&["127.0.0.1"], Validity::Expired),
        second.server(&["gateway.example.com"], Validity::Current),
        Issued { cert_pem: mismatched.cert_pem.clone(), key_pem: first.client("x").key_pem },
    ];
    let mut failures = 0.0;
    for (i, b) in bad.iter().enumerate() {
        b.write(files.path(), "server");
        if i == 1 {
            // a certificate for another name is a valid certificate: the gateway serves it,
            // and a client that checks the name refuses it
            let served = gatehouse_testkit::eventually(Duration::from_secs(10), || async {
                chat_status(&renewed, &gw).await.is_err_and(|e| format!("{e:?}").contains("NotValidForName"))
            })
            .await;
            assert!(served, "a hostname mismatch is the client's to refuse");
            continue;
        }
        failures += 1.0;
        let counted = gatehouse_testkit::eventually(Duration::from_secs(10), || async {
            gw.metric("gatehouse_tls_reloads_total{plane=\"data\",result=\"failed\"}").await >= failures
        })
        .await;
        assert!(counted, "bad file {i} refused");
    }
    // the certificate for the wrong name stayed in service through the two bad ones
    let e = chat_status(&renewed, &gw).await.unwrap_err();
    assert!(format!("{e:?}").contains("NotValidForName"), "{e:?}");
    let logs = gw.logs();
    assert!(logs.contains("the certificate in service stays"), "{logs}");
    assert!(!logs.contains("PRIVATE KEY"), "key material is never logged");
    assert!(logs.contains("expired at"), "{logs}");
    assert!(logs.contains("does not fit the certificate"), "{logs}");
}

#[tokio::test]
async fn certificate_files_that_cannot_serve_stop_the_start() {
    let files = tempfile::tempdir().unwrap();
    let ca = Ca::new("ops");
    let cases = [
        ("expired", ca.server(&["127.0.0.1"], Validity::Expired), "expired at"),
        ("early", ca.server(&["127.0.0.1"], Validity::NotYet), "not valid before"),
        (
            "mismatch",
            Issued { cert_pem: ca.server(&["127.0.0.1"], Validity::Current).cert_pem, key_pem: ca.client("x").key_pem },
            "does not fit the certificate",
        ),
        ("nokey", Issued { cert_pem: ca.pem.clone(), key_pem: String::new() }, "holds no private key"),
    ];
    for (stem, issued, expected) in cases {
        issued.write(files.path(), stem);
        let section = tls_section("data", files.path(), stem, None);
        let e = gateway().config(&section).start_error().await;
        assert!(e.contains("tls.data") && e.contains(expected), "{stem}: {e}");
        assert!(!e.contains("BEGIN"), "{stem}: PEM never echoed: {e}");
        // `gatehouse validate` finds it before a deploy does
        let (ok, out) = crate::common::validate(&section);
        assert!(!ok && out.contains(expected), "{stem}: {out}");
    }
    ca.server(&["127.0.0.1"], Validity::Current).write(files.path(), "good");
    let (ok, out) = crate::common::validate(&tls_section("data", files.path(), "good", None));
    assert!(ok, "{out}");
    let e = gateway().config(&tls_section("control", files.path(), "absent", None)).start_error().await;
    assert!(e.contains("tls.control") && e.contains("absent.crt") && e.contains("not found"), "{e}");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_handshake_is_cut_off() {
    let files = tempfile::tempdir().unwrap();
    Ca::new("ops").server(&["127.0.0.1"], Validity::Current).write(files.path(), "server");
    let gw = gateway()
        .server("header_read_timeout_ms = 300")
        .config(&tls_section("data", files.path(), "server", None))
        .spawn()
        .await;
    let addr = gw.data_url.trim_start_matches("https://").to_owned();
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), tokio::io::AsyncReadExt::read(&mut silent, &mut buf))
        .await
        .expect("the gateway closes the connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(gw.metric("gatehouse_tls_handshake_failures_total{plane=\"data\"}").await >= 1.0);
}

#[tokio::test]
async fn postgres_is_reached_over_tls_that_verifies_the_server_with_the_configured_ca() {
    let Some(url) = crate::postgres::fresh_schema_url() else { return };
    let upstream = crate::postgres::server_of(&url);
    let files = tempfile::tempdir().unwrap();
    let (ca, other) = (Ca::new("database"), Ca::new("other"));
    std::fs::write(files.path().join("db-ca.pem"), &ca.pem).unwrap();
    std::fs::write(files.path().join("other-ca.pem"), &other.pem).unwrap();
    // PostgreSQL behind a certificate for "localhost" (and one that has expired)
    let good = TlsProxy::spawn(&ca.server(&["localhost"], Validity::Current), Front::Postgres, upstream).await;
    let expired = TlsProxy::spawn(&ca.server(&["localhost"], Validity::Expired), Front::Postgres, upstream).await;
    let mut u = url::Url::parse(&url).unwrap();
    let mut through = |proxy: &TlsProxy, host: &str, ca_file: &str| {
        u.set_host(Some(host)).unwrap();
        u.set_port(Some(proxy.addr.port())).unwrap();
        let root = files.path().join(ca_file);
        format!("{u}&sslmode=verify-full&sslrootcert={}", root.display())
    };

    let ok = through(&good, "localhost", "db-ca.pem");
    let gw = gateway().env("GATEHOUSE_DATABASE_URL", &ok).spawn().await;
    assert_eq!(gw.chat(gw.key(), "mock").await.status(), 200);
    let (_, key) = gw.create_key(json!({"name": "over-tls"})).await;
    assert_eq!(gw.chat(&key, "mock").await.status(), 200);
    drop(gw);

    // another CA, a name the certificate does not carry, an expired certificate: no start,
    // and the error does not carry the URL
    for bad in [
        through(&good, "localhost", "other-ca.pem"),
        through(&good, "127.0.0.1", "db-ca.pem"),
        through(&expired, "localhost", "db-ca.pem"),
    ] {
        let e = gateway().env("GATEHOUSE_DATABASE_URL", &bad).start_error().await;
        assert!(e.contains("cannot connect to PostgreSQL"), "{bad}: {e}");
        assert!(!e.contains("sslrootcert"), "{e}");
    }
}

#[tokio::test]
async fn redis_is_reached_over_rediss_with_the_configured_ca_only() {
    let upstream: std::net::SocketAddr = "127.0.0.1:6379".parse().unwrap();
    let files = tempfile::tempdir().unwrap();
    let (ca, other) = (Ca::new("cache"), Ca::new("other"));
    std::fs::write(files.path().join("redis-ca.pem"), &ca.pem).unwrap();
    std::fs::write(files.path().join("other-ca.pem"), &other.pem).unwrap();
    let proxy = TlsProxy::spawn(&ca.server(&["localhost"], Validity::Current), Front::Direct, upstream).await;
    let config = |ca_file: &str| {
        format!(
            "[redis]\nurl = \"env:REDIS_URL\"\nkey_prefix = \"tls{}\"\nca_file = \"{}\"\n",
            std::process::id(),
            files.path().join(ca_file).display()
        )
    };
    let url = format!("rediss://localhost:{}/0", proxy.addr.port());
    let gw = gateway().config(&config("redis-ca.pem")).env("REDIS_URL", &url).spawn().await;
    let (id, key) = gw.create_key(json!({"name": "limited"})).await;
    let resp = gw.admin(Method::PUT, &format!("/admin/v1/keys/{id}/limits"), Some(&json!({"rpm": 1}))).await;
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    // the limit lives in Redis, reached through the TLS proxy: one request, then 429
    let limited = gatehouse_testkit::eventually(Duration::from_secs(10), || async {
        gw.chat(&key, "mock").await.status() == 429
    })
    .await;
    assert!(limited, "the key's rate is counted in Redis");
    drop(gw);

    let e = gateway().config(&config("other-ca.pem")).env("REDIS_URL", &url).start_error().await;
    assert!(e.contains("limits store"), "{e}");
    let plain = format!("redis://localhost:{}/0", proxy.addr.port());
    let e = gateway().config(&config("redis-ca.pem")).env("REDIS_URL", &plain).start_error().await;
    assert!(e.contains("limits store"), "a TLS-only Redis is not reached in plain text: {e}");
}

/// A TLS client offering `alpn`, trusting only `ca`.
fn alpn_client(ca: &str, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
}

async fn tls_open(
    url: &str,
    connector: &tokio_rustls::TlsConnector,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(url.trim_start_matches("https://")).await?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    connector.connect(name, tcp).await
}

/// One request over an HTTP/2 connection: its status and whole body.
async fn h2_call(
    h2: &h2::client::SendRequest<bytes::Bytes>,
    url: &str,
    key: &str,
    body: serde_json::Value,
) -> (u16, String) {
    let mut h2 = h2.clone().ready().await.unwrap();
    let req = http::Request::post(url)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    let (resp, mut send) = h2.send_request(req, false).unwrap();
    send.send_data(bytes::Bytes::from(body.to_string()), true).unwrap();
    let resp = resp.await.unwrap();
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut text = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        text.extend_from_slice(&chunk);
    }
    (status, String::from_utf8(text).unwrap())
}

/// ALPN `h2` on the TLS data plane: requests and a stream share one connection; a connection
/// on which no request starts for the header-read timeout is closed (GOAWAY) like an idle
/// HTTP/1 one; the control plane offers HTTP/1.1 only.
#[tokio::test]
async fn the_tls_data_plane_speaks_http2_and_closes_idle_connections() {
    let files = tempfile::tempdir().unwrap();
    let ca = Ca::new("ops");
    ca.server(&["127.0.0.1", "localhost"], Validity::Current).write(files.path(), "server");
    let config = format!(
        "{}{}",
        tls_section("data", files.path(), "server", None),
        tls_section("control", files.path(), "server", None)
    );
    let gw = gateway().server("header_read_timeout_ms = 1000").config(&config).spawn().await;

    let tls = tls_open(&gw.data_url, &alpn_client(&ca.pem, &[b"h2", b"http/1.1"])).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (h2, conn) = h2::client::handshake(tls).await.unwrap();
    let conn = tokio::spawn(conn);
    let url = format!("{}/v1/chat/completions", gw.data_url);
    let plain = json!({"model": "mock", "messages": [{"role": "user", "content": "hello"}]});
    let streamed = json!({"model": "mock", "stream": true, "messages": [{"role": "user", "content": "hello"}]});
    let (a, b, c) = tokio::join!(
        h2_call(&h2, &url, gw.key(), plain.clone()),
        h2_call(&h2, &url, gw.key(), streamed),
        h2_call(&h2, &url, "gth_wrong", plain),
    );
    assert_eq!(a.0, 200, "{}", a.1);
    assert!(a.1.contains("mock provider"), "{}", a.1);
    assert_eq!(b.0, 200);
    assert!(b.1.trim_end().ends_with("data: [DONE]"), "{}", b.1);
    assert_eq!(c.0, 401, "the chain runs the same on HTTP/2");
    assert!(!c.1.contains("gth_wrong"));

    // idle (the client still holds the connection open): the gateway closes it within a few
    // header-read timeouts, and it takes no more requests
    let closed = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(closed.is_ok(), "an idle HTTP/2 connection is closed");
    assert!(h2.clone().ready().await.is_err());

    // the control plane: HTTP/1.1 only (a client that wants only h2 is refused at the handshake)
    let tls = tls_open(&gw.admin_url, &alpn_client(&ca.pem, &[b"h2", b"http/1.1"])).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert!(tls_open(&gw.admin_url, &alpn_client(&ca.pem, &[b"h2"])).await.is_err());
}
