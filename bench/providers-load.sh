#!/usr/bin/env bash
# The provider dimension of the load benchmark (issue #17): what translation to another API
# family adds. One realistic gateway (bench/lib.sh: API key, guardrails, audit, ledger, prices,
# rates and budgets on key, project and org) with four providers on the one fake provider
# process, each at its own door: openai_compatible (Chat Completions), anthropic (Messages),
# gemini (generateContent) and bedrock (Converse, SigV4-signed by the gateway; the direct
# baseline uses a Bedrock API key, which the fake accepts unsigned).
#
# For each provider kind, wrk drives the same ~1 KiB prompt two ways, alternating within each
# round: directly at the fake's door in that door's own format (the baseline), and through the
# gateway as an OpenAI client. The added p50 is gateway minus its own door's baseline, so a
# door's cost in the fake cancels out; the last column is that added p50 minus OpenAI's: the
# cost of translating (target: within 50 us for Anthropic at c=1).
#
#   bash bench/providers-load.sh                    # 5 s per cell, 3 rounds, c=1, ~4 min
#   DURATION=10 ROUNDS=5 CONCURRENCY="1 16" bash bench/providers-load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5}; ROUNDS=${ROUNDS:-3}; CONCURRENCY=${CONCURRENCY:-1}
KINDS=${KINDS:-"openai anthropic gemini bedrock"}
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT

. bench/lib.sh
build_bins
start_fake
root=${fake%/v1}
export FAKE_KEY=sk-bench AWS_ID=AKIAGATEHOUSEFAKE01 AWS_SECRET=fake/bedrock/secret+key/for/tests/0000
start_gateway providers "$realistic_config
[[providers]]
name = \"claude\"
kind = \"anthropic\"
base_url = \"$fake\"
api_key = \"env:FAKE_KEY\"
[[providers]]
name = \"google\"
kind = \"gemini\"
base_url = \"$root/v1beta\"
api_key = \"env:FAKE_KEY\"
[[providers]]
name = \"aws\"
kind = \"bedrock\"
base_url = \"$root\"
region = \"us-east-1\"
aws_access_key_id = \"env:AWS_ID\"
aws_secret_access_key = \"env:AWS_SECRET\"
[[models]]
name = \"fake-claude\"
provider = \"claude\"
[[models]]
name = \"fake-gemini\"
provider = \"google\"
[[models]]
name = \"fake-bedrock\"
provider = \"aws\"
provider_model = \"anthropic.claude-v1:0\"
[prices.\"fake-claude\"]
input_per_mtok = 3
output_per_mtok = 15
[prices.\"fake-gemini\"]
input_per_mtok = 0.3
output_per_mtok = 2.5
[prices.\"fake-bedrock\"]
input_per_mtok = 3
output_per_mtok = 15"
configure_limits $(admin_of providers)

# wrk scripts: "<kind>_<mode>_direct.lua" and "<kind>_<mode>_gw.lua", and the direct URLs
python3 - "$out" "$gw_key" "$long_messages" <<'PY'
import json, sys
out, key, messages = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
system, user = messages[0]["content"], messages[1]["content"]
def script(name, body, headers):
    lines = ['wrk.method = "POST"', "wrk.body = " + json.dumps(json.dumps(body)), 'wrk.headers["Content-Type"] = "application/json"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    open(f"{out}/{name}.lua", "w").write("\n".join(lines) + "\n")
for mode in ("plain", "stream"):
    s = mode == "stream"
    gw = {"messages": messages, "max_tokens": 64, "stream": s}
    for kind, model in (("openai", "fake-model"), ("anthropic", "fake-claude"), ("gemini", "fake-gemini"), ("bedrock", "fake-bedrock")):
        script(f"{kind}_{mode}_gw", dict(gw, model=model), {"Authorization": "Bearer " + key})
    script(f"openai_{mode}_direct", dict(gw, model="fake-model"), {})
    script(f"anthropic_{mode}_direct", {"model": "fake-claude", "max_tokens": 64, "system": system, "stream": s,
        "messages": [{"role": "user", "content": user}]}, {"x-api-key": "sk-bench", "anthropic-version": "2023-06-01"})
    gem = {"systemInstruction": {"parts": [{"text": system}]}, "contents": [{"role": "user", "parts": [{"text": user}]}],
           "generationConfig": {"maxOutputTokens": 64}}
    script(f"gemini_{mode}_direct", gem, {"x-goog-api-key": "sk-bench"})
    conv = {"system": [{"text": system}], "messages": [{"role": "user", "content": [{"text": user}]}],
            "inferenceConfig": {"maxTokens": 64}}
    script(f"bedrock_{mode}_direct", conv, {"Authorization": "Bearer bench-bedrock-api-key"})
PY
direct_url() { # $1 kind, $2 mode
  case $1 in
    openai) echo "$fake/chat/completions" ;;
    anthropic) echo "$fake/messages" ;;
    gemini) [ "$2" = stream ] && echo "$root/v1beta/models/fake-gemini:streamGenerateContent?alt=sse" \
      || echo "$root/v1beta/models/fake-gemini:generateContent" ;;
    bedrock) [ "$2" = stream ] && echo "$root/model/anthropic.claude-v1%3A0/converse-stream" \
      || echo "$root/model/anthropic.claude-v1%3A0/converse" ;;
  esac
}

printf "\nGatehouse provider benchmark, %s: realistic chain, ~1 KiB prompt, %s s per cell, %s round(s), medians;\nwrk, gateway and fake provider share %s cores\n\n" \
  "$(date -u +%Y-%m-%d)" "$DURATION" "$ROUNDS" "$(nproc)"
printf "%-9s %-6s %4s | %9s %7s | %9s %7s | %9s %6s %6s | %s\n" \
  provider mode conc "door rps" p50us "gw rps" p50us "added p50" ratio non2xx "vs openai"
declare -A base
for m in plain stream; do
  for c in $CONCURRENCY; do
    for k in $KINDS; do
      dr=(); dp=(); gr=(); gp=(); errs=0
      for _ in $(seq 1 "$ROUNDS"); do
        read -r a b _ e < <(measure "$(direct_url "$k" "$m")" "$out/${k}_${m}_direct.lua" "$c")
        dr+=("$a"); dp+=("$b"); errs=$((errs + e))
        read -r a b _ e < <(measure "$gw_url/v1/chat/completions" "$out/${k}_${m}_gw.lua" "$c")
        gr+=("$a"); gp+=("$b"); errs=$((errs + e))
      done
      added=$(python3 -c 'import statistics as s,sys; a=sys.argv[1].split(); b=sys.argv[2].split(); print(round(s.median(map(float,b)) - s.median(map(float,a))))' "${dp[*]}" "${gp[*]}")
      [ "$k" = openai ] && base[$m$c]=$added
      python3 - "$k" "$m" "$c" "$errs" "${dr[*]}" "${dp[*]}" "${gr[*]}" "${gp[*]}" "$added" "${base[$m$c]:-}" <<'PY'
import statistics, sys
k, m, c, errs, *cols = sys.argv[1:9]
added, base = int(sys.argv[9]), sys.argv[10]
dr, dp, gr, gp = ([float(x) for x in col.split()] for col in cols)
med = statistics.median
vs = f"{added - int(base):+d} us" if base and k != "openai" else ""
print(f"{k:<9} {m:<6} {c:>4} | {med(dr):>9.0f} {med(dp):>7.0f} | {med(gr):>9.0f} {med(gp):>7.0f} | {added:>7d}us "
      f"{med(gr) / med(dr):>6.0%} {errs:>6} | {vs}")
PY
    done
  done
done
