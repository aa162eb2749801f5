"""Generic webhook deliveries verify with the Standard Webhooks reference library and with the
snippet printed in docs/AUDIT.md (executed from the doc itself, so the doc cannot rot)."""

import http.server
import json
import os
import pathlib
import queue
import re
import threading
import urllib.request

import pytest
import standardwebhooks

from conftest import start_gateway

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "AUDIT.md"


def doc_verify():
    text = DOC.read_text()
    code = re.search(r"\*\*Verifying a delivery\*\*.*?```python\n(.*?)```", text, re.S).group(1)
    scope = {}
    exec(code, scope)  # noqa: S102 - our own documentation
    return scope["verify"]


@pytest.fixture(scope="module")
def receiver():
    got = queue.Queue()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.put((dict(self.headers), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", got
    server.shutdown()


def admin(gw, method, path, body=None):
    req = urllib.request.Request(
        gw.admin_url + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", "Authorization": "Bearer " + gw.admin_token},
        method=method,
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.load(r)


def test_deliveries_verify_with_the_reference_library_and_the_doc_snippet(fake, receiver):
    url, got = receiver
    proc, gw = start_gateway(fake, '\n[webhooks]\nallow_private_targets = ["127.0.0.1/32"]\n')
    try:
        hook = admin(gw, "POST", "/admin/v1/webhooks",
                     {"name": "siem", "kind": "generic", "url": url, "events": ["key.*"], "org": "default"})
        secret = hook["secret"]
        created = gw.create_key(name="ci")
        headers, body = got.get(timeout=10)

        payload = standardwebhooks.Webhook(secret).verify(body, headers)
        assert payload["type"] == "key.create"
        assert payload["data"]["target"] == created["id"]
        assert payload["data"]["outcome"] == "allowed"
        assert created["key"] not in body.decode(), "a key's secret never reaches a webhook"

        verify = doc_verify()
        lower = {k.lower(): v for k, v in headers.items()}
        assert verify(secret, lower, body)
        assert not verify(secret, lower, body.replace(b"allowed", b"denied!")), "a changed body fails"
        with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
            standardwebhooks.Webhook("whsec_" + "A" * 43).verify(body, headers)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
