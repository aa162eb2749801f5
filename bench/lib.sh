# Shared by the load benchmarks: build, start the fake provider and gateways, drive wrk.
# Sourced, not run. Expects $out (a temp dir) to be set. $PROFILE picks the cargo profile:
# `release` (what users run, stripped) unless a profiler needs `profiling` (line tables).
profile=${PROFILE:-release}

build_bins() {
  if ! command -v wrk >/dev/null; then
    echo "installing wrk (Debian package)" >&2
    (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
  fi
  cargo build --profile "$profile" -q -p gatehouse -p gatehouse-testkit --bins
  target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
}

start_fake() { # sets $fake
  "$target/$profile/fake-provider" 127.0.0.1:0 8 > "$out/fake.txt" &
  for _ in $(seq 1 100); do grep -q "listening on" "$out/fake.txt" && break; sleep 0.1; done
  fake=$(sed -n 's/^listening on //p' "$out/fake.txt")
}

write_config() { # $1 file, $2 data dir, $3 extra config: both planes on ephemeral ports, the fake
  cat > "$1" <<TOML
[server]
data_listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
data_dir = "$2"
[[providers]]
name = "fake"
base_url = "$fake"
[[models]]
name = "fake-model"
provider = "fake"
$3
TOML
}

start_gateway() { # $1 name, $2 extra config; sets gw_url, gw_key, gw_pid ($bin: another build)
  local name=$1
  write_config "$out/$name.toml" "$out/$name-data" "$2"
  GATEHOUSE_LOG=${GATEHOUSE_LOG:-warn} "${bin:-$target/$profile/gatehouse}" serve --config "$out/$name.toml" > "$out/$name.txt" 2> "$out/$name.log" &
  gw_pid=$!
  for _ in $(seq 1 100); do grep -q "gatehouse: ready" "$out/$name.txt" && break; sleep 0.1; done
  gw_url=$(sed -n 's/^gatehouse: data plane *//p' "$out/$name.txt")
  gw_key=$(sed -n 's/^ *api key: *//p' "$out/$name.txt")
}

# The realistic chain as users run it (issue #15): prices for the ledger, and on top of the
# defaults (API key, guardrails, audit of every request, usage ledger) a rate and a budget on
# the key, its project and its org, all far above what a run spends, so every request does the
# whole check: three rates, a reservation on three budgets, a settlement.
realistic_config='[prices."fake-model"]
input_per_mtok = 2.5
output_per_mtok = 10'

# Starts gateway $1 as one of the chains the benchmarks compare ($2): default (the embedded
# default plus the fake provider), realistic (above) or redis (the realistic chain with its
# rates and budgets on Redis at $REDIS_URL, default redis://127.0.0.1:6379/0). Sets gw_url,
# gw_key, gw_pid.
start_chain() {
  case $2 in
    default) start_gateway "$1" "" ;;
    realistic) start_gateway "$1" "$realistic_config" ;;
    redis)
      export BENCH_REDIS=${BENCH_REDIS:-${REDIS_URL:-redis://127.0.0.1:6379/0}}
      start_gateway "$1" "$realistic_config
[redis]
url = \"env:BENCH_REDIS\"
key_prefix = \"bench-$$-$1\"" ;;
    *) echo "unknown chain $2 (default, realistic or redis)" >&2; exit 2 ;;
  esac
  if [ "$2" != default ]; then configure_limits $(admin_of "$1"); fi
}

configure_limits() { # $1 admin url, $2 admin token
  local org project key
  org=$(curl -sf -H "Authorization: Bearer $2" "$1/admin/v1/orgs" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])')
  project=$(curl -sf -H "Authorization: Bearer $2" "$1/admin/v1/orgs/$org/projects" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])')
  key=$(curl -sf -H "Authorization: Bearer $2" "$1/admin/v1/keys?org=default" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])')
  put_limit "$1" "$2" "/admin/v1/orgs/$org/limits" '{"rpm":1000000,"budgets":[{"period":"monthly","usd":1000000}]}'
  put_limit "$1" "$2" "/admin/v1/orgs/$org/projects/$project/limits" '{"rpm":1000000,"budgets":[{"period":"daily","tokens":1000000000000}]}'
  put_limit "$1" "$2" "/admin/v1/keys/$key/limits?org=default" '{"rpm":1000000,"budgets":[{"period":"lifetime","usd":1000000}]}'
}

put_limit() { # $1 admin url, $2 token, $3 path, $4 spec
  curl -sf -X PUT -H "Authorization: Bearer $2" -H 'Content-Type: application/json' -d "$4" "$1$3" > /dev/null
}

admin_of() { # $1 gateway name -> "admin_url token"
  echo "$(sed -n 's/^gatehouse: control plane *//p' "$out/$1.txt") $(sed -n 's/^ *admin token: *//p' "$out/$1.txt")"
}

# A ~1 KiB chat request (system prompt + a user message), as applications send them.
long_messages='[{"role":"system","content":"You are a careful assistant for a logistics company. Answer concisely, cite the relevant policy section when you can, never invent shipment numbers, and ask for the order id if the user has not given one. Keep answers under 120 words unless the user asks for detail. If a question concerns hazardous goods, point to section 7 of the handling manual and recommend contacting the safety desk."},{"role":"user","content":"Hello, my parcel was supposed to arrive on Tuesday but the tracking page has said in transit at the regional hub for three days now. The order was placed two weeks ago and I paid for express delivery. Could you tell me what usually causes this kind of delay, whether I am entitled to a refund of the express fee, and what I should do next? I would also like to know if I can change the delivery address to my office, since I will not be at home next week."}]'
short_messages='[{"role":"user","content":"Summarise the plot of Hamlet in two sentences."}]'

body() { # $1 short|long, $2 plain|stream
  local m=$short_messages stream=""
  [ "$1" = long ] && m=$long_messages
  [ "$2" = stream ] && stream='"stream":true,'
  # UNIQUE=1: every request's user message is new (a number in front; see lua), as in
  # production, where only the system prompt repeats
  [ "${UNIQUE:-0}" = 1 ] && m=${m//\"role\":\"user\",\"content\":\"/\"role\":\"user\",\"content\":\"@N@ }
  printf '{"model":"fake-model",%s"messages":%s,"max_tokens":64}' "$stream" "$m"
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
  # a body with @N@ gets a number of its own per request (each wrk thread counts in its own range)
  case $1 in
    *@N@*) cat <<'LUA'
local threads = 0
function setup(thread)
  thread:set("base", threads * 100000000)
  threads = threads + 1
end
local n = nil
request = function()
  n = (n or base or 0) + 1
  return wrk.format(nil, nil, nil, (wrk.body:gsub("@N@", string.format("%d", n), 1)))
end
LUA
    ;;
  esac
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
