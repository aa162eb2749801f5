#!/usr/bin/env bash
# The console's render budget (issue #22: a page in < 50 ms of server time with 10,000 keys and
# 1M audit events): fills a store with KEYS keys and EVENTS audit events
# (crates/gatehouse-store/examples/fill_console.rs), starts the release gateway on it, signs
# in, and times each page RUNS times with curl (time to first byte on loopback, which is the
# server's time plus a loopback round trip). Prints p50 and p90 per page. Not a test.
#
#   bash bench/console.sh                      # SQLite, 10,000 keys, 1,000,000 events
#   STORE=postgres bash bench/console.sh       # a fresh schema in $GATEHOUSE_TEST_POSTGRES_URL
set -euo pipefail
cd "$(dirname "$0")/.."

KEYS=${KEYS:-10000}
EVENTS=${EVENTS:-1000000}
RUNS=${RUNS:-21}
STORE=${STORE:-sqlite}
PG=${GATEHOUSE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}

cargo build --release -q -p gatehouse --bin gatehouse
cargo build -q -p gatehouse-store --example fill_console
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
out=$(mktemp -d)
trap 'kill $gw_pid 2>/dev/null || true; rm -rf "$out"' EXIT
mkdir -p "$out/data"

env_store=()
if [ "$STORE" = postgres ]; then
  schema="console_bench_$$"
  psql "$PG" -qc "CREATE SCHEMA $schema"
  sep='?'; case $PG in *\?*) sep='&' ;; esac
  url="$PG${sep}options=-c%20search_path%3D$schema"
  fill="$url"
  env_store=(GATEHOUSE_DATABASE_URL="$url")
else
  fill="sqlite:$out/data/gatehouse.db"
fi
echo "filling $STORE: $KEYS keys, $EVENTS audit events" >&2
"$target/debug/examples/fill_console" "$fill" "$KEYS" "$EVENTS" >&2

cat > "$out/g.toml" <<TOML
[server]
data_listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
data_dir = "$out/data"
admin_requests_per_minute_per_source = 1000000
[console]
token_sign_in = "always"
TOML
env "${env_store[@]}" GATEHOUSE_LOG=warn "$target/release/gatehouse" serve --config "$out/g.toml" > "$out/out.txt" 2> "$out/log.txt" &
gw_pid=$!
for _ in $(seq 1 300); do grep -q "gatehouse: ready" "$out/out.txt" && break; sleep 0.1; done
admin=$(sed -n 's/^gatehouse: control plane *//p' "$out/out.txt")
token=$(sed -n 's/^ *admin token: *//p' "$out/out.txt")
curl -s -o /dev/null -c "$out/jar" -H "Origin: $admin" --data-urlencode "token=$token" "$admin/sign-in"

org=$(curl -s -H "Authorization: Bearer $token" "$admin/admin/v1/orgs" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])')
# a key from the middle of the list, for a deep page
mid=$(curl -s -H "Authorization: Bearer $token" "$admin/admin/v1/keys?limit=1000" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][-1]["id"])')

time_page() { # $1 path: prints p50 and p90 in ms of RUNS fetches
  for _ in $(seq 1 "$RUNS"); do
    curl -s -o /dev/null -b "$out/jar" -w '%{http_code} %{time_starttransfer}\n' "$admin$1"
  done | python3 -c '
import sys
rows = [l.split() for l in sys.stdin]
bad = [c for c, _ in rows if c != "200"]
ms = sorted(float(t) * 1000 for _, t in rows)
p = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]
print(f"{p(0.5):8.1f} {p(0.9):8.1f}" + (f"  (non-200: {bad[0]})" if bad else ""))'
}

printf '\nconsole pages on %s, %s keys, %s audit events, %s runs each (ms to first byte)\n' "$STORE" "$KEYS" "$EVENTS" "$RUNS"
printf '%-44s %8s %8s\n' page p50 p90
for path in "/" "/keys" "/keys?before=$mid" "/sessions" "/usage" "/audit" "/audit?org=$org" \
            "/audit?action=key.create" "/audit?org=$org&action=token.revoke" "/orgs/$org" "/orgs/$org/limits" \
            "/tokens" "/capabilities"; do
  printf '%-44s %s\n' "$path" "$(time_page "$path")"
done
# not a page: re-verifying every chain from the store (what "Verify now" and the daily run do)
verify_s=$(curl -s -o /dev/null -w '%{time_total}' -X POST -H "Authorization: Bearer $token" "$admin/admin/v1/audit/verify")
printf '\nPOST /admin/v1/audit/verify over %s events: %.1f s\n' "$EVENTS" "$verify_s"
if [ "$STORE" = postgres ]; then psql "$PG" -qc "DROP SCHEMA $schema CASCADE" 2>/dev/null; fi
