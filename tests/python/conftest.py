"""Starts the real fake-provider and gatehouse binaries for the official-client suite.

GATEHOUSE_BIN and FAKE_PROVIDER_BIN point at the built binaries (.ci/run sets them).
"""

import json
import os
import subprocess
import tempfile
import time
import urllib.request

import pytest


def _read_until(proc, marker, timeout=60):
    lines = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("process exited early:\n" + "".join(lines))
        lines.append(line)
        if marker in line:
            return lines
    raise RuntimeError("timed out waiting for " + marker)


@pytest.fixture(scope="session")
def fake():
    proc = subprocess.Popen(
        [os.environ["FAKE_PROVIDER_BIN"], "127.0.0.1:0", "4"],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = _read_until(proc, "listening on")[-1]
    base = line.split("listening on", 1)[1].strip()
    yield Fake(base)
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def reset_fake(fake):
    fake.behave(kind="ok")
    yield
    fake.behave(kind="ok")


class Fake:
    def __init__(self, base_url):
        self.base_url = base_url

    def behave(self, **spec):
        req = urllib.request.Request(
            self.base_url.rsplit("/v1", 1)[0] + "/__fake/behavior",
            data=json.dumps(spec).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(req, timeout=5).read()

    def calls(self):
        with urllib.request.urlopen(self.base_url.rsplit("/v1", 1)[0] + "/__fake/calls", timeout=5) as r:
            return json.load(r)["calls"]


class Gateway:
    def __init__(self, data_url, admin_url, api_key, admin_token):
        self.data_url = data_url
        self.admin_url = admin_url
        self.api_key = api_key
        self.admin_token = admin_token

    def create_key(self, **body):
        return self.admin_post("/admin/v1/keys", body)

    def admin_get(self, path):
        req = urllib.request.Request(self.admin_url + path, headers={"Authorization": "Bearer " + self.admin_token})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.load(r)

    def admin_post(self, path, body, method="POST"):
        req = urllib.request.Request(
            self.admin_url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": "Bearer " + self.admin_token},
            method=method,
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.load(r)


@pytest.fixture(scope="session")
def gateway(fake):
    proc, gw = start_gateway(fake)
    yield gw
    proc.terminate()
    proc.wait(timeout=15)


@pytest.fixture(scope="session")
def fuzz_gateway(fake):
    """A gateway of its own for schema fuzzing, with control-plane rate limits out of the way."""
    proc, gw = start_gateway(
        fake, 'admin_mutations_per_minute = 1000000\nadmin_requests_per_minute_per_source = 10000000\n'
    )
    yield gw
    proc.terminate()
    proc.wait(timeout=15)


@pytest.fixture(scope="session")
def guarded_gateway(fake):
    """A gateway with output guardrails on: PII redacted, secrets blocked, in and out."""
    proc, gw = start_gateway(
        fake,
        extra="""
[guardrails]
detectors = { pii = { input = "redact", output = "redact" }, secret = { input = "block", output = "block" } }
""",
    )
    yield gw
    proc.terminate()
    proc.wait(timeout=15)


def start_gateway(fake, server_extra="", extra="", env_extra=None, admin_port=0):
    tmp = tempfile.mkdtemp(prefix="gatehouse-py-")
    config = os.path.join(tmp, "gatehouse.toml")
    with open(config, "w") as f:
        f.write(
            f"""
[server]
data_listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:{admin_port}"
data_dir = "{tmp}/data"
{server_extra}

[[providers]]
name = "fake"
base_url = "{fake.base_url}"
api_key = "env:FAKE_KEY"
first_byte_timeout_ms = 1500
idle_timeout_ms = 1000

[[models]]
name = "fake-model"
provider = "fake"

[[models]]
name = "fake-embed"
provider = "fake"
kind = "embedding"
{extra}
"""
        )
    env = {"PATH": os.environ.get("PATH", ""), "FAKE_KEY": "sk-fake-provider", "GATEHOUSE_LOG": "warn"}
    env.update(env_extra or {})
    proc = subprocess.Popen(
        [os.environ["GATEHOUSE_BIN"], "serve", "--config", config],
        stdout=subprocess.PIPE,
        stderr=open(os.path.join(tmp, "gatehouse.log"), "w"),
        text=True,
        env=env,
    )
    banner = "".join(_read_until(proc, "gatehouse: ready"))
    values = {}
    for line in banner.splitlines():
        line = line.strip()
        for prefix, key in [
            ("gatehouse: data plane", "data"),
            ("gatehouse: control plane", "admin"),
            ("admin token:", "admin_token"),
            ("api key:", "api_key"),
        ]:
            if line.startswith(prefix):
                values[key] = line[len(prefix) :].strip()
    return proc, Gateway(values["data"], values["admin"], values["api_key"], values["admin_token"])
