#!/usr/bin/env bash
# The whole test suite, one command:
#   - Rust: unit tests, property tests, store tests on SQLite and PostgreSQL, and end-to-end
#     tests that start the real `gatehouse` binary against a real fake upstream;
#   - Python: the official `openai` client against the real binaries (in a venv);
#   - OIDC: a real OpenID Provider (node oidc-provider, installed here with npm ci);
#   - the web console in a real headless Chromium (Debian's package, installed here if missing).
# PostgreSQL is expected at GATEHOUSE_TEST_POSTGRES_URL (default
# postgres://postgres@127.0.0.1:5432/test). Outside CI its tests are skipped with a loud
# message when it is down; with CI=true they fail.
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=${CARGO_BUILD_JOBS:-2}
# The real OpenID Provider the OIDC end-to-end tests run against (node oidc-provider, pinned
# by tests/oidc/package-lock.json).
npm ci --prefix tests/oidc --no-audit --no-fund --loglevel=error
# The console's browser suite (tests/python/test_console_browser.py) drives Debian's chromium
# through Playwright; without it that suite is skipped, or fails under CI=true.
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is not installed (apt-get install chromium): the console browser tests will not run" >&2
  fi
fi
cargo build -j"$jobs" --workspace --bins
cargo test -j"$jobs" --workspace

target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
venv=${GATEHOUSE_VENV:-.venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt
GATEHOUSE_BIN="$target/debug/gatehouse" FAKE_PROVIDER_BIN="$target/debug/fake-provider" \
  MACAROON_INTEROP_BIN="$target/debug/macaroon-interop" \
  "$venv/bin/python" -m pytest -q tests/python
