#!/usr/bin/env bash
# Where a request's time goes: the realistic chain (bench/lib.sh) under wrk, long prompt, with
# the gateway's own accounting per request — CPU (user + system, from /proc), CPU by thread,
# context switches — and a `perf` profile of the gateway process (self time by symbol and by
# crate). Not a speed: read it beside `bench/load.sh`, whose ratios are the headline.
#
#   bash bench/profile.sh                      # c = 16, plain, 8 s
#   CONC=1 MODE=stream bash bench/profile.sh
#   PERF=0 bash bench/profile.sh               # only the /proc accounting (no perf)
#   GATEWAY=default bash bench/profile.sh      # the default chain (no rates, budgets, prices)
#   GATEWAY=redis bash bench/profile.sh        # the realistic chain with its limits on Redis
#                                              # (REDIS_URL, default redis://127.0.0.1:6379/0)
#   GATEHOUSE_BIN=/path/to/gatehouse bash bench/profile.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CONC=${CONC:-16}
MODE=${MODE:-plain}
PROMPT=${PROMPT:-long}
DURATION=${DURATION:-8}
PERF=${PERF:-1}
TOP=${TOP:-30}
GATEWAY=${GATEWAY:-realistic}
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT

PROFILE=${PROFILE:-profiling} # symbols and line tables for the profiler
. bench/lib.sh
build_bins
bin=${GATEHOUSE_BIN:-$target/$profile/gatehouse}
start_fake
start_chain gw "$GATEWAY"
url=$gw_url; key=$gw_key; pid=$gw_pid
lua "$(body "$PROMPT" "$MODE")" "$key" > "$out/req.lua"
DURATION=2 measure "$url/v1/chat/completions" "$out/req.lua" "$CONC" > /dev/null # warm-up

# per thread: name, utime+stime in ticks, voluntary + involuntary context switches
threads() {
  for t in /proc/"$pid"/task/*; do
    [ -r "$t/stat" ] || continue
    python3 - "$t" <<'PY'
import sys
t = sys.argv[1]
stat = open(t + "/stat").read()
name = open(t + "/comm").read().strip()
f = stat[stat.rindex(")") + 2:].split()
cs = dict(l.split(":") for l in open(t + "/status") if "ctxt_switches" in l)
print(t.rsplit("/", 1)[1], name.replace(" ", "_"), int(f[11]) + int(f[12]),
      int(cs["voluntary_ctxt_switches"]) + int(cs["nonvoluntary_ctxt_switches"]))
PY
  done
}
threads > "$out/before.txt"
if [ "$PERF" = 1 ]; then
  perf record -q -F "${FREQ:-499}" --call-graph dwarf,16384 -p "$pid" -o "$out/perf.data" -- sleep "$DURATION" > /dev/null 2>&1 &
  perf_pid=$!
fi
read -r rps p50 p99 errs < <(measure "$url/v1/chat/completions" "$out/req.lua" "$CONC")
threads > "$out/after.txt"
[ "$PERF" = 1 ] && wait "$perf_pid" || true
echo "gateway RSS: $(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' /proc/$pid/status) MiB now, peak $(awk '/VmHWM/ {printf "%.1f", $2 / 1024}' /proc/$pid/status) MiB"

python3 - "$out/before.txt" "$out/after.txt" "$rps" "$DURATION" "$p50" "$p99" "$errs" "$(getconf CLK_TCK)" <<'PY'
import sys, collections
def read(p):
    return {l.split()[0]: (l.split()[1], int(l.split()[2]), int(l.split()[3])) for l in open(p)}
before, after = read(sys.argv[1]), read(sys.argv[2])
rps, secs, p50, p99, errs, hz = float(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7], int(sys.argv[8])
n = rps * secs
by_name = collections.defaultdict(lambda: [0, 0])
for tid, (name, ticks, cs) in after.items():
    b = before.get(tid, (name, 0, 0))
    # numbered threads of one pool count as one
    key = name.rstrip("0123456789-") or name
    by_name[key][0] += ticks - b[1]
    by_name[key][1] += cs - b[2]
total = sum(v[0] for v in by_name.values())
print(f"\n{rps:.0f} requests/s, p50 {p50} us, p99 {p99} us, non-2xx {errs}; {n:.0f} requests measured")
print(f"gateway CPU per request: {total / hz / n * 1e6:.1f} us (user + system)")
print(f"context switches per request: {sum(v[1] for v in by_name.values()) / n:.2f}")
print("\nby thread              CPU share   us/request   switches/request")
for name, (ticks, cs) in sorted(by_name.items(), key=lambda kv: -kv[1][0]):
    if ticks == 0 and cs == 0:
        continue
    print(f"  {name:<20} {ticks / max(total, 1):>9.0%} {ticks / hz / n * 1e6:>12.1f} {cs / n:>18.2f}")
PY

if [ "$PERF" = 1 ]; then
  set +o pipefail # head closes the pipes early
  echo
  echo "self time by shared object"
  perf report -i "$out/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -8
  echo
  echo "self time by symbol (top $TOP)"
  perf report -i "$out/perf.data" --no-children --sort sym --stdio -g none 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -"$TOP" | cut -c1-150
  echo
  echo "inclusive time of the chain's own steps"
  perf report -i "$out/perf.data" --children --sort sym --stdio -g none 2>/dev/null \
    | grep -E '^ +[0-9.]+% +[0-9.]+% .*gatehouse_[a-z_]+::' | head -"$TOP" | cut -c1-150
  if [ -n "${KEEP:-}" ]; then cp "$out/perf.data" "$KEEP"; echo "perf data kept in $KEEP"; fi
fi
