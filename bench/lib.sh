# Shared by the load benchmarks: build, start the fake provider and gateways, drive wrk.
# Sourced, not run. Expects $out (a temp dir) to be set.

build_bins() {
  if ! command -v wrk >/dev/null; then
    echo "installing wrk (Debian package)" >&2
    (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
  fi
  cargo build --release -q -p gatehouse -p gatehouse-testkit --bins
  target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
}

start_fake() { # sets $fake
  "$target/release/fake-provider" 127.0.0.1:0 8 > "$out/fake.txt" &
  for _ in $(seq 1 100); do grep -q "listening on" "$out/fake.txt" && break; sleep 0.1; done
  fake=$(sed -n 's/^listening on //p' "$out/fake.txt")
}

start_gateway() { # $1 name, $2 extra config; sets gw_url, gw_key, gw_pid
  local name=$1
  cat > "$out/$name.toml" <<TOML
[server]
data_listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
data_dir = "$out/$name-data"
[[providers]]
name = "fake"
base_url = "$fake"
[[models]]
name = "fake-model"
provider = "fake"
$2
TOML
  GATEHOUSE_LOG=${GATEHOUSE_LOG:-warn} "$target/release/gatehouse" serve --config "$out/$name.toml" > "$out/$name.txt" 2> "$out/$name.log" &
  gw_pid=$!
  for _ in $(seq 1 100); do grep -q "gatehouse: ready" "$out/$name.txt" && break; sleep 0.1; done
  gw_url=$(sed -n 's/^gatehouse: data plane *//p' "$out/$name.txt")
  gw_key=$(sed -n 's/^ *api key: *//p' "$out/$name.txt")
}

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

# wrk -> "rps p50_us p99_us non2xx"
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
