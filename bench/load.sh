#!/usr/bin/env bash
# Load benchmark: client -> gateway -> fake provider versus client -> fake provider, in the
# same run, at several concurrencies, plain and streamed. Prints RPS, p50, p99 and the
# gateway's cost relative to direct; and the gateway's idle and peak RSS.
#
#   bash bench/load.sh                 # 10 s per cell, 2 rounds (medians reported)
#   DURATION=5 ROUNDS=1 bash bench/load.sh
#
# Everything runs on loopback: wrk, the gateway and the fake provider share this machine's
# cores, so absolute numbers are modest; compare ratios from the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-2}
CONCURRENCY=${CONCURRENCY:-"1 16 64"}
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT

. bench/lib.sh
build_bins
start_fake
start_gateway gatehouse ""
gw=$gw_url
key=$gw_key
sleep 1
idle_rss=$(awk '/VmRSS/ {print $2}' /proc/$gw_pid/status)

lua "$body_plain" "" > "$out/direct_plain.lua"
lua "$body_stream" "" > "$out/direct_stream.lua"
lua "$body_plain" "$key" > "$out/gw_plain.lua"
lua "$body_stream" "$key" > "$out/gw_stream.lua"

printf "\nGatehouse load benchmark: %s s per cell, %s round(s), medians; wrk, gateway and fake provider share %s cores\n\n" "$DURATION" "$ROUNDS" "$(nproc)"
printf "%-7s %4s | %10s %9s %9s | %10s %9s %9s | %9s %9s %8s\n" mode conc "direct rps" "p50 us" "p99 us" "gw rps" "p50 us" "p99 us" "added p50" "rps ratio" "non-2xx"
for mode in plain stream; do
  for c in $CONCURRENCY; do
    dr=(); dp50=(); dp99=(); gr=(); gp50=(); gp99=(); errs=0
    for _ in $(seq 1 "$ROUNDS"); do
      read -r a b d e < <(measure "$fake/chat/completions" "$out/direct_$mode.lua" "$c")
      dr+=("$a"); dp50+=("$b"); dp99+=("$d"); errs=$((errs + e))
      read -r a b d e < <(measure "$gw/v1/chat/completions" "$out/gw_$mode.lua" "$c")
      gr+=("$a"); gp50+=("$b"); gp99+=("$d"); errs=$((errs + e))
    done
    DR=$(median "${dr[@]}"); DP50=$(median "${dp50[@]}"); DP99=$(median "${dp99[@]}")
    GR=$(median "${gr[@]}"); GP50=$(median "${gp50[@]}"); GP99=$(median "${gp99[@]}")
    python3 - "$mode" "$c" "$DR" "$DP50" "$DP99" "$GR" "$GP50" "$GP99" "$errs" <<'PY'
import sys
m, c, dr, dp50, dp99, gr, gp50, gp99, errs = sys.argv[1:]
dr, dp50, dp99, gr, gp50, gp99 = map(float, (dr, dp50, dp99, gr, gp50, gp99))
print(f"{m:<7} {c:>4} | {dr:>10.0f} {dp50:>9.0f} {dp99:>9.0f} | {gr:>10.0f} {gp50:>9.0f} {gp99:>9.0f} | {gp50 - dp50:>8.0f}us {gr / dr:>8.0%} {errs:>8}")
PY
  done
done
peak_rss=$(awk '/VmHWM/ {print $2}' /proc/$gw_pid/status)
python3 -c 'import sys; print(f"\ngateway RSS: idle {int(sys.argv[1]) / 1024:.1f} MiB, peak {int(sys.argv[2]) / 1024:.1f} MiB")' "$idle_rss" "$peak_rss"
