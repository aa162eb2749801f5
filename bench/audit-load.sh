#!/usr/bin/env bash
# The cost of auditing every allowed request: two gateways on the same fake provider, one with
# `audit.data_plane = "all"` (the default), one with "denials" (refusals only, so allowed
# requests write nothing), plus the direct baseline, measured in alternating rounds of the
# same run. Prints medians and the growth of the added p50.
#
#   bash bench/audit-load.sh                       # 10 s per cell, 3 rounds, c = 16
#   DURATION=5 ROUNDS=2 CONCURRENCY="1 16" bash bench/audit-load.sh
#   AUDIT_EXTRA="batch_linger_ms = 25" bash bench/audit-load.sh   # more [audit] settings
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONCURRENCY=${CONCURRENCY:-16}
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT

. bench/lib.sh
build_bins
start_fake
start_gateway on "[audit]
data_plane = \"all\"
${AUDIT_EXTRA:-}"
on_url=$gw_url; on_key=$gw_key; on_pid=$gw_pid
start_gateway off "[audit]
data_plane = \"denials\"
${AUDIT_EXTRA:-}"
off_url=$gw_url; off_key=$gw_key
sleep 1
lua "$body_plain" "" > "$out/direct.lua"
lua "$body_plain" "$on_key" > "$out/on.lua"
lua "$body_plain" "$off_key" > "$out/off.lua"

printf "\nAudit cost: %s s per cell, %s round(s), medians, plain requests; %s cores shared\n\n" "$DURATION" "$ROUNDS" "$(nproc)"
printf "%4s | %9s | %10s %9s | %10s %9s | %14s %14s | %s\n" conc "direct p50" "off rps" "off p50" "on rps" "on p50" "added p50 off" "added p50 on" "growth"
for c in $CONCURRENCY; do
  d=(); fr=(); fp=(); nr=(); np=()
  for _ in $(seq 1 "$ROUNDS"); do
    read -r _ b _ _ < <(measure "$fake/chat/completions" "$out/direct.lua" "$c"); d+=("$b")
    read -r a b _ _ < <(measure "$off_url/v1/chat/completions" "$out/off.lua" "$c"); fr+=("$a"); fp+=("$b")
    read -r a b _ _ < <(measure "$on_url/v1/chat/completions" "$out/on.lua" "$c"); nr+=("$a"); np+=("$b")
  done
  python3 - "$c" "$(median "${d[@]}")" "$(median "${fr[@]}")" "$(median "${fp[@]}")" "$(median "${nr[@]}")" "$(median "${np[@]}")" <<'PY'
import sys
c, d, fr, fp, nr, np = sys.argv[1], *map(float, sys.argv[2:])
off, on = fp - d, np - d
print(f"{c:>4} | {d:>9.0f}us | {fr:>10.0f} {fp:>7.0f}us | {nr:>10.0f} {np:>7.0f}us | {off:>12.0f}us {on:>12.0f}us | {on / off - 1:+.1%} added, p50 {np / fp - 1:+.1%}")
PY
done
events=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"SELECT COALESCE(SUM(last_seq - first_seq + 1), 0) || ' events in ' || COUNT(*) || ' segments' FROM audit_log\").fetchone()[0])" "$out/on-data/gatehouse.db" 2>/dev/null || echo "?")
printf "\naudited gateway wrote %s; RSS peak %.1f MiB\n" "$events" "$(awk '/VmHWM/ {print $2 / 1024}' /proc/$on_pid/status)"
