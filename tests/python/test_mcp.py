"""The MCP gateway against the official MCP Python SDK on both sides: its client against the
real gatehouse binary, its server (MCPServer over Streamable HTTP, tests/python/mcp_upstream.py)
as the upstream. Both protocol eras: the current stateless one (2026-07-28, the client's default)
and the handshake era with sessions (2025-11-25, `mode="legacy"`)."""

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import anyio
import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

from conftest import _read_until, start_gateway

HERE = os.path.dirname(os.path.abspath(__file__))
MODES = ["auto", "legacy"]


def _upstream(*args):
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "mcp_upstream.py"), *args], stdout=subprocess.PIPE, text=True
    )
    url = _read_until(proc, "listening on")[-1].split("listening on", 1)[1].strip()
    return proc, url


@pytest.fixture(scope="module")
def upstreams():
    a, url_a = _upstream("--variant", "a")
    try:
        b, url_b = _upstream("--variant", "b")
    except BaseException:
        a.terminate()
        raise
    try:
        yield {"a": url_a, "b": url_b}
    finally:
        for p in (a, b):
            p.terminate()
            p.wait(timeout=10)


class Mcp:
    """The gateway, its tenants and their registered servers."""

    def __init__(self, gw, upstreams):
        self.gw = gw
        self.upstreams = upstreams
        self.org = gw.admin_get("/admin/v1/orgs")["data"][0]["id"]
        registered = gw.admin_post(
            "/admin/v1/mcp/servers",
            {"name": "tools", "url": upstreams["a"], "org": self.org, "credential": "Bearer upstream-secret-a"},
        )
        self.identity_key_id = registered["identity_key_id"]
        self.identity_key = registered["identity_key"]
        # the default org's policy: one tool denied, one resource denied, one tool on a short leash
        gw.admin_post(
            f"/admin/v1/orgs/{self.org}/mcp",
            {
                "tools": {"deny": ["*/forbidden"]},
                "resources": {"deny": ["tools/secret://*"]},
                "timeouts": [{"tools": "tools/sleep", "timeout_ms": 1500}],
            },
            method="PUT",
        )
        # the default org blocks prompt injection in what enters a model's context (tool results)
        gw.admin_post(
            f"/admin/v1/orgs/{self.org}/guardrails",
            {"detectors": {"prompt_injection": {"input": "block"}}},
            method="PUT",
        )
        # a second org with a server of the same name, on another upstream
        self.org_b = gw.admin_post("/admin/v1/orgs", {"name": "mcp-org-b"})["id"]
        gw.admin_post(f"/admin/v1/orgs/{self.org_b}/projects", {"name": "b-main"})
        self.key_b = gw.create_key(name="mcp-b", org="mcp-org-b", project="b-main")["key"]
        gw.admin_post(
            "/admin/v1/mcp/servers",
            {"name": "tools", "url": upstreams["b"], "org": self.org_b, "credential": "Bearer upstream-secret-b"},
        )
        # a server only the default org has
        gw.admin_post("/admin/v1/mcp/servers", {"name": "only-a", "url": upstreams["a"], "org": self.org})

    def url(self, server="tools"):
        return f"{self.gw.data_url}/mcp/{server}"


@pytest.fixture(scope="module")
def mcp(fake, upstreams):
    proc, gw = start_gateway(fake, extra='\n[mcp]\nallow_private_targets = ["127.0.0.1/32"]\n')
    try:
        yield Mcp(gw, upstreams)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def session(url, key, mode):
    http = httpx2.AsyncClient(headers={"Authorization": "Bearer " + key}, timeout=30)
    return http, Client(streamable_http_client(url, http_client=http), mode=mode)


def run(fn):
    return anyio.run(fn)


def seen(upstream_url):
    base = upstream_url.rsplit("/mcp", 1)[0]
    with urllib.request.urlopen(base + "/__seen", timeout=5) as r:
        return json.load(r)


@pytest.mark.parametrize("mode", MODES)
def test_list_and_call_through_the_gateway(mcp, mode):
    async def go():
        http, client = session(mcp.url(), mcp.gw.api_key, mode)
        async with http, client:
            tools = {t.name for t in (await client.list_tools()).tools}
            # the policy's denied tool is not listed; the rest is
            assert tools == {"echo", "sleep", "fetch_page", "read_config"}
            r = await client.call_tool("echo", {"text": "hi"})
            assert not r.is_error and r.content[0].text == "echo[a]: hi"
            resources = {str(r.uri) for r in (await client.list_resources()).resources}
            assert resources == {"demo://greeting"}
            read = await client.read_resource("demo://greeting")
            assert read.contents[0].text == "hello from a resource"
            prompt = await client.get_prompt("summarize", {"topic": "MCP"})
            assert "MCP" in prompt.messages[0].content.text

    run(go)


@pytest.mark.parametrize("mode", MODES)
def test_a_denied_tool_is_a_json_rpc_error_and_never_reaches_the_server(mcp, mode):
    async def go():
        http, client = session(mcp.url(), mcp.gw.api_key, mode)
        async with http, client:
            before = len([s for s in seen(mcp.upstreams["a"]) if s["rpc_method"] == "tools/call"])
            with pytest.raises(MCPError) as e:
                await client.call_tool("forbidden", {"target": "prod"})
            assert e.value.code == -32003
            assert e.value.data == {"gatehouse": "permission_denied"}
            assert "prod" not in e.value.message
            with pytest.raises(MCPError) as e:
                await client.read_resource("secret://vault")
            assert e.value.code == -32003
            after = [s for s in seen(mcp.upstreams["a"]) if s["rpc_method"] == "tools/call"]
            assert len(after) == before, "the denied call reached the server"

    run(go)
    # audited: method, server, tool, outcome; never the arguments (the writer batches: poll)
    for _ in range(50):
        events = mcp.gw.admin_get("/admin/v1/audit?action=request.denied&limit=100")["data"]
        denied = [e for e in events if (e.get("mcp") or {}).get("name") == "forbidden"]
        if denied:
            break
        time.sleep(0.1)
    assert denied, events[:3]
    assert denied[0]["mcp"]["server"] == "tools" and denied[0]["mcp"]["method"] == "tools/call"
    assert denied[0]["code"] == "permission_denied" and denied[0]["endpoint"] == "mcp"
    assert "prod" not in json.dumps(events)


@pytest.mark.parametrize("mode", MODES)
def test_a_tool_over_its_timeout_is_cut_off(mcp, mode):
    async def go():
        http, client = session(mcp.url(), mcp.gw.api_key, mode)
        async with http, client:
            started = anyio.current_time()
            with pytest.raises(MCPError) as e:
                await client.call_tool("sleep", {"seconds": 4})
            assert e.value.code == -32001 and e.value.data == {"gatehouse": "upstream_timeout"}
            assert anyio.current_time() - started < 3.5
            # the session goes on
            assert (await client.call_tool("echo", {"text": "after"})).content[0].text == "echo[a]: after"

    run(go)


def test_the_server_gets_the_gateways_credential_and_signed_identity_never_the_callers(mcp):
    async def go():
        http, client = session(mcp.url(), mcp.gw.api_key, "auto")
        async with http, client:
            await client.call_tool("echo", {"text": "whoami"})

    run(go)
    calls = [s for s in seen(mcp.upstreams["a"]) if s["rpc_method"] == "tools/call"]
    h = calls[-1]["headers"]
    assert h["authorization"] == "Bearer upstream-secret-a"
    assert mcp.gw.api_key not in json.dumps(seen(mcp.upstreams["a"]))
    assert h["x-gatehouse-org"] == mcp.org and h["x-gatehouse-subject"].startswith("key:")
    assert h["x-gatehouse-key-id"] == mcp.identity_key_id
    canonical = "\n".join(
        [
            "gatehouse-identity-v1",
            "POST",
            "/mcp",
            h["x-gatehouse-timestamp"],
            calls[-1]["body_sha256"],
            h["x-gatehouse-org"],
            h["x-gatehouse-project"],
            h["x-gatehouse-subject"],
            h["x-gatehouse-roles"],
            h["x-gatehouse-request-id"],
            h["x-gatehouse-key-id"],
        ]
    )
    mac = hmac.new(mcp.identity_key.encode(), canonical.encode(), hashlib.sha256).digest()
    import base64

    assert h["x-gatehouse-signature"] == "v1=" + base64.urlsafe_b64encode(mac).decode().rstrip("=")


def _raw(url, key, body, session_id=None, version="2025-11-25"):
    headers = {
        "Authorization": "Bearer " + key,
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
    }
    if version:
        headers["mcp-protocol-version"] = version
    if session_id:
        headers["mcp-session-id"] = session_id
    return httpx2.post(url, headers=headers, content=json.dumps(body), timeout=10)


INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}


def test_a_session_presented_with_another_credential_is_not_found(mcp):
    r = _raw(mcp.url(), mcp.gw.api_key, INIT, version=None)
    assert r.status_code == 200
    sid = r.headers["mcp-session-id"]
    assert len(sid) == 64
    # the server's own session id never reaches the client
    assert sid not in json.dumps(seen(mcp.upstreams["a"]))
    other = mcp.gw.create_key(name="mcp-hijacker")["key"]
    hijack = _raw(mcp.url(), other, LIST, session_id=sid)
    assert hijack.status_code == 404
    assert hijack.json()["error"]["data"] == {"gatehouse": "not_found"}
    # another org's key with the same session id, on its own server of the same name: not found
    assert _raw(mcp.url(), mcp.key_b, LIST, session_id=sid).status_code == 404
    # a made-up one likewise
    assert _raw(mcp.url(), mcp.gw.api_key, LIST, session_id="0" * 64).status_code == 404
    # the owner still has it
    assert _raw(mcp.url(), mcp.gw.api_key, LIST, session_id=sid).status_code == 200


def test_a_revoked_key_loses_its_session_mid_way(mcp):
    created = mcp.gw.create_key(name="mcp-revoked")
    key, key_id = created["key"], created["id"]

    async def go():
        http, client = session(mcp.url(), key, "legacy")
        async with http:
            async with client:
                assert (await client.call_tool("echo", {"text": "1"})).content[0].text == "echo[a]: 1"
                mcp.gw.admin_post(f"/admin/v1/keys/{key_id}/revoke", {})
                with pytest.raises(MCPError):
                    # the key cache honours revocation within its poll interval
                    for _ in range(50):
                        await client.call_tool("echo", {"text": "2"})
                        await anyio.sleep(0.1)

    try:
        run(go)
    except BaseExceptionGroup:
        # closing the session with a revoked key is refused too (DELETE answers 401)
        pass
    r = _raw(mcp.url(), key, LIST)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")


def test_tenants_with_servers_of_the_same_name_see_only_their_own(mcp):
    async def tools_of(key, server="tools"):
        http, client = session(mcp.url(server), key, "auto")
        async with http, client:
            return {t.name for t in (await client.list_tools()).tools}

    assert "b_only" not in run(lambda: tools_of(mcp.gw.api_key))
    # org B has no policy: its own server's every tool, including the one only it has
    assert run(lambda: tools_of(mcp.key_b)) == {"echo", "sleep", "forbidden", "fetch_page", "read_config", "b_only"}

    async def echo_b():
        http, client = session(mcp.url(), mcp.key_b, "auto")
        async with http, client:
            return (await client.call_tool("echo", {"text": "x"})).content[0].text

    assert run(echo_b) == "echo[b]: x"
    calls_b = [s for s in seen(mcp.upstreams["b"]) if s["rpc_method"] == "tools/call"]
    assert calls_b[-1]["headers"]["authorization"] == "Bearer upstream-secret-b"
    # a server only org A registered does not exist for org B
    r = _raw(mcp.url("only-a"), mcp.key_b, LIST, version="2026-07-28")
    assert r.status_code == 404 and r.json()["error"]["data"] == {"gatehouse": "not_found"}
    assert _raw(mcp.url("no-such-server"), mcp.gw.api_key, LIST).status_code == 404


def test_no_credential_is_401_with_www_authenticate(mcp):
    r = httpx2.post(mcp.url(), headers={"Content-Type": "application/json"}, content=json.dumps(LIST), timeout=10)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["error"]["data"] == {"gatehouse": "missing_credentials"}


def test_bad_frames_are_refused_before_any_server_sees_them(mcp):
    batch = [LIST, LIST]
    r = _raw(mcp.url(), mcp.gw.api_key, batch)
    assert r.status_code == 400 and r.json()["error"]["code"] == -32600
    r = httpx2.post(
        mcp.url(),
        headers={"Authorization": "Bearer " + mcp.gw.api_key, "Content-Type": "application/json"},
        content=b"{not json",
        timeout=10,
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == -32700
    # routing headers that disagree with the body are refused: the gateway decided on the body
    call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "forbidden", "arguments": {}}}
    r = httpx2.post(
        mcp.url(),
        headers={
            "Authorization": "Bearer " + mcp.gw.api_key,
            "Content-Type": "application/json",
            "mcp-method": "tools/call",
            "mcp-name": "echo",
        },
        content=json.dumps(call),
        timeout=10,
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == -32020
    # methods the gateway does not govern are refused
    r = _raw(mcp.url(), mcp.gw.api_key, {"jsonrpc": "2.0", "id": 4, "method": "tasks/list"})
    assert r.status_code == 200 and r.json()["error"]["code"] == -32003
    # GET (a server-to-client stream) is not offered
    r = httpx2.get(mcp.url(), headers={"Authorization": "Bearer " + mcp.gw.api_key}, timeout=10)
    assert r.status_code == 405


@pytest.mark.parametrize("mode", MODES)
def test_a_tool_result_carrying_an_injection_is_blocked(mcp, mode):
    """Indirect prompt injection: the server's answer would enter the agent's model context."""

    async def go():
        http, client = session(mcp.url(), mcp.gw.api_key, mode)
        async with http, client:
            with pytest.raises(MCPError) as e:
                await client.call_tool("fetch_page", {"url": "https://shop.example"})
            assert e.value.code == -32004 and e.value.data == {"gatehouse": "content_blocked"}
            assert "ignore" not in e.value.message.lower()
            # a private key in a result is blocked by the default policy (secrets in: block)
            with pytest.raises(MCPError) as e:
                await client.call_tool("read_config", {})
            assert e.value.data == {"gatehouse": "content_blocked"}
            assert (await client.call_tool("echo", {"text": "still fine"})).content[0].text == "echo[a]: still fine"

    run(go)
    for _ in range(50):
        events = mcp.gw.admin_get("/admin/v1/audit?action=guardrail.blocked&limit=100")["data"]
        blocked = [e for e in events if (e.get("mcp") or {}).get("name") == "fetch_page"]
        if blocked:
            break
        time.sleep(0.1)
    assert blocked and blocked[0]["gate"] == "guardrails_out"
    assert any(h["detector"].startswith("prompt_injection") for h in blocked[0]["guardrails"])
    assert "IMPORTANT" not in json.dumps(events)


def test_secrets_in_tool_arguments_are_redacted_before_the_server_sees_them(mcp):
    """A model's arguments leave for a tool: the output rules apply (secrets redacted)."""

    async def go():
        http, client = session(mcp.url(), mcp.gw.api_key, "auto")
        async with http, client:
            r = await client.call_tool("echo", {"text": "my key is " + mcp.gw.api_key})
            return r.content[0].text

    text = run(go)
    assert text.startswith("echo[a]: my key is ") and mcp.gw.api_key not in text


def test_tool_calls_are_rate_limited_priced_charged_to_budgets_and_in_the_ledger(mcp):
    """A project with an MCP rate on one tool and a price on another, and a daily USD budget."""
    gw = mcp.gw
    project = gw.admin_post(f"/admin/v1/orgs/{mcp.org}/projects", {"name": "mcp-metered"})["id"]
    key = gw.create_key(name="mcp-metered", project="mcp-metered")["key"]
    gw.admin_post(
        f"/admin/v1/orgs/{mcp.org}/projects/{project}/mcp",
        {
            "rates": [{"tools": "tools/sleep", "rpm": 1}],
            "prices": [{"tools": "tools/echo", "micro_usd": 250000}],
        },
        method="PUT",
    )
    gw.admin_post(
        f"/admin/v1/orgs/{mcp.org}/projects/{project}/limits",
        {"budgets": [{"period": "daily", "usd": 0.6}]},
        method="PUT",
    )

    async def go():
        http, client = session(mcp.url(), key, "auto")
        async with http, client:
            await client.call_tool("sleep", {"seconds": 0})
            with pytest.raises(MCPError) as e:
                await client.call_tool("sleep", {"seconds": 0})
            assert e.value.code == -32029 and e.value.data == {"gatehouse": "rate_limit_exceeded"}
            # 0.25 USD a call on a 0.60 USD day: two calls, then the budget refuses the third
            for _ in range(2):
                assert (await client.call_tool("echo", {"text": "paid"})).content[0].text == "echo[a]: paid"
            with pytest.raises(MCPError) as e:
                await client.call_tool("echo", {"text": "one too many"})
            assert e.value.data == {"gatehouse": "insufficient_quota"}

    run(go)
    # the ledger: one row per answered tool call, at its price
    for _ in range(50):
        rows = gw.admin_get(f"/admin/v1/orgs/{mcp.org}/usage?project={project}")["data"]
        echo = [r for r in rows if r["model"] == "tools/echo"]
        if echo and echo[0]["requests"] == 2:
            break
        time.sleep(0.1)
    assert echo and echo[0]["requests"] == 2 and echo[0]["cost_micro_usd"] == 500000, rows
    assert echo[0]["provider"] == "mcp:tools"
    # counted by server, method and tool, never by arguments
    req = urllib.request.Request(gw.admin_url + "/metrics", headers={"Authorization": "Bearer " + gw.admin_token})
    with urllib.request.urlopen(req, timeout=5) as r:
        text = r.read().decode()
    lines = [l for l in text.splitlines() if l.startswith("gatehouse_mcp_messages_total")]
    assert any('tool="echo"' in l and 'server="tools"' in l and 'method="tools/call"' in l for l in lines), lines
    assert not any("paid" in l for l in lines)


def test_a_capability_token_narrows_tools_by_scope(mcp):
    """Scopes `mcp:tool:<server>/<tool>` narrow what a token may call, within the policies."""
    minted = mcp.gw.admin_post(
        "/admin/v1/capabilities",
        {"name": "mcp-agent", "scopes": ["mcp:tool:tools/echo"], "expires_in_seconds": 600},
    )
    token = minted["token"]

    async def go():
        http, client = session(mcp.url(), token, "auto")
        async with http, client:
            assert {t.name for t in (await client.list_tools()).tools} == {"echo"}
            assert (await client.call_tool("echo", {"text": "scoped"})).content[0].text == "echo[a]: scoped"
            with pytest.raises(MCPError) as e:
                await client.call_tool("sleep", {"seconds": 0})
            assert e.value.data == {"gatehouse": "permission_denied"}
            # no resource scope: nothing to read
            with pytest.raises(MCPError):
                await client.read_resource("demo://greeting")

    run(go)
    # a token with no MCP scope cannot reach the server at all
    chat_only = mcp.gw.admin_post(
        "/admin/v1/capabilities", {"name": "chat-only", "scopes": ["chat:*"], "expires_in_seconds": 600}
    )["token"]
    r = _raw(mcp.url(), chat_only, LIST, version="2026-07-28")
    assert r.status_code == 200 and r.json()["error"]["data"] == {"gatehouse": "permission_denied"}
