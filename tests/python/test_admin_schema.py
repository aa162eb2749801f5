"""schemathesis against the control plane's own OpenAPI document: generated requests (valid
and invalid) must never cause a 5xx, and every response must match the documented schema."""

import json
import os
import subprocess
import sys
import urllib.request


def test_openapi_document_lists_the_admin_routes(fuzz_gateway):
    with urllib.request.urlopen(fuzz_gateway.admin_url + "/admin/v1/openapi.json", timeout=5) as r:
        doc = json.load(r)
    assert doc["openapi"].startswith("3.1")
    assert "/admin/v1/orgs/{org}/projects/{project}" in doc["paths"]
    assert "adminToken" in doc["components"]["securitySchemes"]


def test_schemathesis_finds_no_server_error_and_no_schema_violation(fuzz_gateway):
    exe = os.path.join(os.path.dirname(sys.executable), "schemathesis")
    result = subprocess.run(
        [
            exe,
            "run",
            fuzz_gateway.admin_url + "/admin/v1/openapi.json",
            "--header",
            "Authorization: Bearer " + fuzz_gateway.admin_token,
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--max-examples",
            os.environ.get("GATEHOUSE_FUZZ_EXAMPLES", "30"),
            "--seed",
            "20261124",
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
