//! The MCP gateway from outside (docs/MCP.md): registration through the admin API (the
//! outbound-address guard, write-only credentials, tenant scoping) and a second, independent
//! MCP implementation — the official Rust SDK (`rmcp`) as the client — against the real binary
//! fronting the fake provider's MCP server. The official Python SDK on both sides is
//! tests/python/test_mcp.py.

use reqwest::Method;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::json;

use crate::common::{as_root, gateway, new_org, upstream_config};

const LOOPBACK: &str = "[mcp]\nallow_private_targets = [\"127.0.0.1/32\"]\n";

#[tokio::test]
async fn registration_is_guarded_write_only_and_scoped_to_its_tenant() {
    let fake = gatehouse_testkit::FakeProvider::spawn().await;
    // without the platform admin's allowance, a loopback server is refused
    let gw = gateway().spawn().await;
    let org = new_org(&gw, "mcp-guarded").await;
    let url = format!("{}/mcp", fake.base_url().trim_end_matches("/v1"));
    let body = json!({"name": "local", "url": url, "org": org});
    let (st, v) = as_root(&gw, Method::POST, "/admin/v1/mcp/servers", Some(body)).await;
    assert_eq!((st, v["error"]["param"].as_str()), (400, Some("url")), "{v}");
    for (bad, field) in [
        (json!({"name": "a/b", "url": "https://mcp.example.com/mcp", "org": org}), "name"),
        (json!({"name": "x", "url": "https://user:pw@mcp.example.com/mcp", "org": org}), "url"),
        (
            json!({"name": "x", "url": "https://mcp.example.com/mcp", "org": org, "credential_header": "x"}),
            "credential_header",
        ),
        (
            json!({"name": "x", "url": "https://mcp.example.com/mcp", "org": org, "credential": "c", "credential_header": "x-gatehouse-org"}),
            "credential_header",
        ),
        (json!({"name": "x", "url": "https://mcp.example.com/mcp", "org": org, "timeout_ms": 1}), "timeout_ms"),
    ] {
        let (st, v) = as_root(&gw, Method::POST, "/admin/v1/mcp/servers", Some(bad)).await;
        assert_eq!((st, v["error"]["param"].as_str()), (400, Some(field)), "{v}");
    }
    // registered: the credential is never shown again, the identity key once
    let body = json!({"name": "pub", "url": "https://mcp.example.com/mcp", "org": org,
                      "credential": "Bearer mcp-canary-secret-0042"});
    let (st, created) = as_root(&gw, Method::POST, "/admin/v1/mcp/servers", Some(body.clone())).await;
    assert_eq!(st, 201, "{created}");
    assert_eq!(created["identity_key"].as_str().map(str::len), Some(64));
    assert!(created["credential_hint"].as_str().is_some_and(|h| h.starts_with("sha256:")));
    let (st, dup) = as_root(&gw, Method::POST, "/admin/v1/mcp/servers", Some(body)).await;
    assert_eq!((st, dup["error"]["param"].as_str()), (400, Some("name")), "a name is taken once per scope");
    let (_, listed) = as_root(&gw, Method::GET, &format!("/admin/v1/mcp/servers?org={org}"), None).await;
    let text = listed.to_string();
    assert!(!text.contains("mcp-canary-secret") && !text.contains(created["identity_key"].as_str().unwrap()));
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1));
    // another org neither lists nor deletes it
    let other = new_org(&gw, "mcp-other").await;
    let (_, theirs) = as_root(&gw, Method::GET, &format!("/admin/v1/mcp/servers?org={other}"), None).await;
    assert_eq!(theirs["data"].as_array().map(Vec::len), Some(0));
    let id = created["id"].as_str().unwrap();
    let (st, _) = as_root(&gw, Method::DELETE, &format!("/admin/v1/mcp/servers/{id}?org={other}"), None).await;
    assert_eq!(st, 404);
    let (st, _) = as_root(&gw, Method::DELETE, &format!("/admin/v1/mcp/servers/{id}?org={org}"), None).await;
    assert_eq!(st, 200);
    // nothing of the credential in the data directory's files or the logs
    assert!(!gw.logs().contains("mcp-canary-secret"));
}

#[tokio::test]
async fn the_rust_sdk_lists_and_calls_tools_through_the_gateway() {
    let fake = gatehouse_testkit::FakeProvider::spawn().await;
    let gw = gateway()
        .config(&format!("{}\n{LOOPBACK}", upstream_config(&fake)))
        .env("FAKE_UPSTREAM_KEY", crate::common::PROVIDER_SECRET)
        .spawn()
        .await;
    let (_, orgs) = as_root(&gw, Method::GET, "/admin/v1/orgs", None).await;
    let org = orgs["data"][0]["id"].as_str().unwrap().to_owned();
    let url = format!("{}/mcp", fake.base_url().trim_end_matches("/v1"));
    let body = json!({"name": "fake", "url": url, "org": org});
    let (st, v) = as_root(&gw, Method::POST, "/admin/v1/mcp/servers", Some(body)).await;
    assert_eq!(st, 201, "{v}");

    let config = StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp/fake", gw.data_url))
        .auth_header(gw.api_key.clone().unwrap());
    let client = ().serve(StreamableHttpClientTransport::from_config(config)).await.unwrap();
    let tools = client.list_tools(Default::default()).await.unwrap();
    assert_eq!(tools.tools.iter().map(|t| t.name.to_string()).collect::<Vec<_>>(), ["echo"]);
    let args = json!({"text": "from rmcp"}).as_object().cloned().unwrap();
    let result = client.call_tool(CallToolRequestParams::new("echo").with_arguments(args)).await.unwrap();
    assert_eq!(result.content[0].as_text().map(|t| t.text.as_str()), Some("from rmcp"));
    client.cancel().await.unwrap();

    // a bad credential is refused before anything reaches the server
    let config =
        StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp/fake", gw.data_url)).auth_header("gth_not_a_key");
    assert!(().serve(StreamableHttpClientTransport::from_config(config)).await.is_err());
}
