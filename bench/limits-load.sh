#!/usr/bin/env bash
# The data-plane cost of limits and budgets: the same fake provider behind a gateway without
# any limit, one with limits in process, and one with the same limits on Redis, plus the direct
# baseline, in alternating rounds of the same run. The limits: the key's own rate, its
# project's and its org's rates, a USD budget on the org (monthly), a token budget on the
# project (daily) and a USD budget on the key (lifetime), all far above what the run spends —
# so every request does the full check (three rates, reserve on three budgets, settle).
# Prints medians and what the limits add to p50.
#
#   bash bench/limits-load.sh                     # 10 s per cell, 3 rounds, c = 1 and 16
#   DURATION=5 ROUNDS=2 CONCURRENCY=1 bash bench/limits-load.sh
#   REDIS_URL=redis://127.0.0.1:6379/0 (default)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONCURRENCY=${CONCURRENCY:-"1 16"}
export BENCH_REDIS=${REDIS_URL:-redis://127.0.0.1:6379/0}
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT

. bench/lib.sh
build_bins
start_fake
common='[audit]
data_plane = "denials"
[prices."fake-model"]
input_per_mtok = 2.5
output_per_mtok = 10'
start_gateway off "$common"
off_url=$gw_url; off_key=$gw_key
start_gateway local "$common"
local_url=$gw_url; local_key=$gw_key
start_gateway redis "$common
[redis]
url = \"env:BENCH_REDIS\"
key_prefix = \"bench-$$\""
redis_url=$gw_url; redis_key=$gw_key; redis_pid=$gw_pid

configure_limits $(admin_of local)
configure_limits $(admin_of redis)
sleep 1

lua "$body_plain" "" > "$out/direct.lua"
lua "$body_plain" "$off_key" > "$out/off.lua"
lua "$body_plain" "$local_key" > "$out/local.lua"
lua "$body_plain" "$redis_key" > "$out/redis.lua"

printf "\nLimits cost: %s s per cell, %s round(s), medians; %s cores shared (Redis on loopback)\n\n" "$DURATION" "$ROUNDS" "$(nproc)"
printf "%4s | %9s | %10s %9s | %10s %9s | %10s %9s | %s\n" conc "direct p50" "none rps" "none p50" "local rps" "local p50" "redis rps" "redis p50" "limits add (p50)"
for c in $CONCURRENCY; do
  d=(); nr=(); np=(); lr=(); lp=(); rr=(); rp=()
  for _ in $(seq 1 "$ROUNDS"); do
    read -r _ b _ _ < <(measure "$fake/chat/completions" "$out/direct.lua" "$c"); d+=("$b")
    read -r a b _ e1 < <(measure "$off_url/v1/chat/completions" "$out/off.lua" "$c"); nr+=("$a"); np+=("$b")
    read -r a b _ e2 < <(measure "$local_url/v1/chat/completions" "$out/local.lua" "$c"); lr+=("$a"); lp+=("$b")
    read -r a b _ e3 < <(measure "$redis_url/v1/chat/completions" "$out/redis.lua" "$c"); rr+=("$a"); rp+=("$b")
    if [ "$e1" != 0 ] || [ "$e2" != 0 ] || [ "$e3" != 0 ]; then echo "non-2xx answers: none $e1, local $e2, redis $e3" >&2; exit 1; fi
  done
  python3 - "$c" "$(median "${d[@]}")" "$(median "${nr[@]}")" "$(median "${np[@]}")" "$(median "${lr[@]}")" "$(median "${lp[@]}")" "$(median "${rr[@]}")" "$(median "${rp[@]}")" <<'PY'
import sys
c, d, nr, np, lr, lp, rr, rp = sys.argv[1], *map(float, sys.argv[2:])
print(f"{c:>4} | {d:>7.0f}us | {nr:>10.0f} {np:>7.0f}us | {lr:>10.0f} {lp:>7.0f}us | {rr:>10.0f} {rp:>7.0f}us | local {lp - np:+.0f}us, redis {rp - np:+.0f}us ({rr / nr - 1:+.1%} rps)")
PY
done
printf "\nredis gateway RSS peak %.1f MiB\n" "$(awk '/VmHWM/ {print $2 / 1024}' /proc/$redis_pid/status)"
