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

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
fi

cargo build --release -q -p gatehouse -p gatehouse-testkit --bins
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

"$target/release/fake-provider" 127.0.0.1:0 8 > "$out/fake.txt" &
for _ in $(seq 1 100); do grep -q "listening on" "$out/fake.txt" && break; sleep 0.1; done
fake=$(sed -n 's/^listening on //p' "$out/fake.txt")

cat > "$out/gatehouse.toml" <<TOML
[server]
data_listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
data_dir = "$out/data"
[[providers]]
name = "fake"
base_url = "$fake"
[[models]]
name = "fake-model"
provider = "fake"
TOML
GATEHOUSE_LOG=${GATEHOUSE_LOG:-warn} "$target/release/gatehouse" serve --config "$out/gatehouse.toml" > "$out/gw.txt" 2> "$out/gw.log" &
gw_pid=$!
for _ in $(seq 1 100); do grep -q "gatehouse: ready" "$out/gw.txt" && break; sleep 0.1; done
gw=$(sed -n 's/^gatehouse: data plane *//p' "$out/gw.txt")
key=$(sed -n 's/^ *api key: *//p' "$out/gw.txt")
sleep 1
idle_rss=$(awk '/VmRSS/ {print $2}' /proc/$gw_pid/status)

body_plain='{"model":"fake-model","messages":[{"role":"user","content":"Summarise the plot of Hamlet in two sentences."}],"max_tokens":64}'
body_stream='{"model":"fake-model","stream":true,"messages":[{"role":"user","content":"Summarise the plot of Hamlet in two sentences."}],"max_tokens":64}'
lua() { # $1 body, $2 auth header or empty
  local auth=""
  [ -n "$2" ] && auth="wrk.headers[\"Authorization\"] = \"Bearer $2\""
  cat <<LUA
wrk.method = "POST"
wrk.body = '$1'
wrk.headers["Content-Type"] = "application/json"
$auth
LUA
}
lua "$body_plain" "" > "$out/direct_plain.lua"
lua "$body_stream" "" > "$out/direct_stream.lua"
lua "$body_plain" "$key" > "$out/gw_plain.lua"
lua "$body_stream" "$key" > "$out/gw_stream.lua"

# wrk -> "rps p50_us p99_us"
measure() { # $1 url, $2 script, $3 concurrency
  local threads=1
  [ "$3" -ge 2 ] && threads=2
  wrk -t"$threads" -c"$3" -d"${DURATION}s" --latency -s "$2" "$1" 2>&1 | python3 -c '
import re, sys
t = sys.stdin.read()
def us(v):
    m = re.match(r"([\d.]+)([a-z]+)", v)
    if not m:
        sys.exit("cannot read wrk output:\n" + t)
    n, u = m.groups()
    return float(n) * {"us": 1, "ms": 1e3, "s": 1e6}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
# anchored: "92.50%" in the thread stats must not match
p50 = us(re.search(r"^\s+50%\s+(\S+)", t, re.M).group(1))
p99 = us(re.search(r"^\s+99%\s+(\S+)", t, re.M).group(1))
errs = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
print(rps, p50, p99, errs.group(1) if errs else 0)'
}

median() { python3 -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

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
