#!/usr/bin/env bash
# Instructions per request: the realistic chain (see bench/lib.sh) under valgrind's callgrind,
# N sequential long-prompt requests after a warm-up, counted over the whole gateway process
# (request path, audit writer, ledger, SQLite threads; user space only, kernel excluded).
# Unlike RPS on this shared 2-core machine, the count does not move with the neighbours' load,
# so it shows a change of a few percent that load.sh's noise hides. It is not a latency:
# valgrind runs the binary ~50x slower, at c = 1, so background batches are smaller than under
# load; compare counts between builds, not against the headline.
#
#   bash bench/instructions.sh                 # N=1000, prints the count and the top items
#   N=2000 TOP=40 bash bench/instructions.sh
#   GATEHOUSE_BIN=/path/to/other/gatehouse bash bench/instructions.sh   # an older build, A/B
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000}
TOP=${TOP:-25}
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT

PROFILE=${PROFILE:-profiling} # symbols and line tables for the profiler
. bench/lib.sh
if ! command -v valgrind >/dev/null; then
  echo "installing valgrind (Debian package)" >&2
  (apt-get update -qq && apt-get install -y -qq valgrind) >/dev/null
fi
build_bins
bin=${GATEHOUSE_BIN:-$target/$profile/gatehouse}
start_fake
write_config "$out/g.toml" "$out/data" "$realistic_config"
GATEHOUSE_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" \
  "$bin" serve --config "$out/g.toml" > "$out/gw.txt" 2> "$out/vg.log" &
vg=$!
for _ in $(seq 1 600); do grep -q "gatehouse: ready" "$out/gw.txt" && break; sleep 0.2; done
grep -q "gatehouse: ready" "$out/gw.txt" || { cat "$out/vg.log" >&2; exit 1; }
url=$(sed -n 's/^gatehouse: data plane *//p' "$out/gw.txt")
key=$(sed -n 's/^ *api key: *//p' "$out/gw.txt")
configure_limits "$(sed -n 's/^gatehouse: control plane *//p' "$out/gw.txt")" \
  "$(sed -n 's/^ *admin token: *//p' "$out/gw.txt")"

send() { # $1 count: sequential requests on one keep-alive connection, each must answer 200
  python3 - "$url" "$key" "$(body long plain)" "$1" <<'PY'
import http.client, sys, urllib.parse
url, key, body, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
u = urllib.parse.urlparse(url)
c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
for _ in range(n):
    c.request("POST", "/v1/chat/completions", body, {"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    if r.status != 200:
        sys.exit(f"gateway answered {r.status}")
PY
}
send 200
sleep 1
callgrind_control --zero "$vg" > /dev/null
send "$N"
sleep 1
callgrind_control --dump=measured "$vg" > /dev/null
sleep 1
kill "$vg" 2>/dev/null || true
wait "$vg" 2>/dev/null || true
dump=$(grep -l "measured" "$out"/cg.out* | head -1)
total=$(callgrind_annotate "$dump" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
printf "\n%s: %d instructions per request (N=%d, realistic chain, long prompt, plain)\n\n" \
  "$(date -u +%Y-%m-%d)" "$((total / N))" "$N"
echo "largest items, inclusive, per request (gatehouse code and the libraries it calls directly):"
callgrind_annotate --inclusive=yes "$dump" | python3 -c '
import re, sys
n, top = int(sys.argv[1]), int(sys.argv[2])
seen, shown = set(), 0
for line in sys.stdin:
    m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+\S+?:(.*?)(?: \[.*\])?$", line)
    if not m:
        continue
    cost, fn = int(m.group(1).replace(",", "")), m.group(2)
    if not re.search(r"gatehouse_|aho_corasick::automaton::try_find|RegexSet::matches|serde_json::value::de|sqlite3_step|malloc\.c:(malloc|free)$|reqwest::async_impl::client::PendingRequest", fn):
        continue
    fn = re.sub(r"\{\{closure\}\}", "", fn)[:110]
    if fn in seen:
        continue
    seen.add(fn)
    print(f"  {cost // n:>8}  {fn}")
    shown += 1
    if shown >= top:
        break
' "$N" "$TOP"
