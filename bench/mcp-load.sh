#!/usr/bin/env bash
# What the MCP gateway adds to a tool call (issue #20): wrk drives `tools/call` (the current MCP
# revision's stateless POST, JSON answer) at the fake MCP server directly and through the
# gateway (`/mcp/fake`: authenticate, parse, tool policy, guardrails on arguments and result,
# signed identity headers, audit of every message), alternating within each round. The org has
# an MCP policy (allow/deny patterns and a timeout) so the policy step does its whole check.
# Prints medians, the added p50 (bar: < 300 us at c = 1) and the RPS ratio.
#
#   bash bench/mcp-load.sh                      # 5 s per cell, 3 rounds, c = 1 and 16
#   DURATION=10 ROUNDS=5 CONCURRENCY="1 16 64" bash bench/mcp-load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5}; ROUNDS=${ROUNDS:-3}; CONCURRENCY=${CONCURRENCY:-"1 16"}
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT

. bench/lib.sh
build_bins
start_fake
start_gateway mcp '[mcp]
allow_private_targets = ["127.0.0.1/32"]'
read -r admin token < <(admin_of mcp)
direct="${fake%/v1}/mcp"
org=$(curl -sf -H "Authorization: Bearer $token" "$admin/admin/v1/orgs" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])')
curl -sf -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d "{\"name\":\"fake\",\"url\":\"$direct\",\"org\":\"$org\",\"credential\":\"Bearer bench\"}" "$admin/admin/v1/mcp/servers" > /dev/null
curl -sf -X PUT -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d '{"tools":{"allow":["fake/*"],"deny":["*/delete_*"]},"timeouts":[{"tools":"fake/*","timeout_ms":5000}]}' \
  "$admin/admin/v1/orgs/$org/mcp" > /dev/null

call='{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"Look up the shipping status of order 4711 and summarise it for the customer."},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}'
script() { # $1 auth key or empty
  lua "$call" "$1"
  cat <<'LUA'
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["Mcp-Protocol-Version"] = "2026-07-28"
wrk.headers["Mcp-Method"] = "tools/call"
wrk.headers["Mcp-Name"] = "echo"
LUA
}
script "" > "$out/direct.lua"
script "$gw_key" > "$out/gateway.lua"
# one call each way first: both answer
curl -sf -H 'Content-Type: application/json' -H "Authorization: Bearer $gw_key" -d "$call" "$gw_url/mcp/fake" | grep -q '"isError":false'

printf "\nGatehouse MCP benchmark, %s: tools/call, %s s per cell, %s rounds, medians\n\n" \
  "$(date -u +%Y-%m-%d)" "$DURATION" "$ROUNDS"
printf "%4s | %10s %9s | %10s %9s | %9s %s\n" conc "direct rps" "p50 us" "gw rps" "p50 us" "added p50" "rps ratio"
for c in $CONCURRENCY; do
  rd=(); pd=(); rg=(); pg=(); errs=0
  for _ in $(seq 1 "$ROUNDS"); do
    read -r a b _ e < <(measure "$direct" "$out/direct.lua" "$c"); rd+=("$a"); pd+=("$b"); errs=$((errs + e))
    read -r a b _ e < <(measure "$gw_url/mcp/fake" "$out/gateway.lua" "$c"); rg+=("$a"); pg+=("$b"); errs=$((errs + e))
  done
  python3 - "$c" "${rd[*]}" "${pd[*]}" "${rg[*]}" "${pg[*]}" <<'PY'
import statistics, sys
c, *cols = sys.argv[1:]
rd, pd, rg, pg = ([float(x) for x in col.split()] for col in cols)
m = statistics.median
print(f"{c:>4} | {m(rd):>10.0f} {m(pd):>9.0f} | {m(rg):>10.0f} {m(pg):>9.0f} | {m(pg) - m(pd):>+7.0f} us {m(rg) / m(rd):>8.0%}")
PY
  [ "$errs" -eq 0 ] || echo "  ($errs non-2xx answers)"
done
