#!/usr/bin/env bash
# What deployments cost on the request path (issue #18): one realistic gateway (bench/lib.sh)
# with `fake-model` on one deployment and `fake-3` on three deployments of one tier (three
# providers, each on the one fake provider; breakers on), the same ~1 KiB prompt to each,
# alternating within each round. Prints both p50s and their difference (bar: < 10 us at c = 1).
#
#   bash bench/routing-load.sh                  # 5 s per cell, 5 rounds, c = 1
#   DURATION=10 ROUNDS=5 CONCURRENCY="1 16" bash bench/routing-load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5}; ROUNDS=${ROUNDS:-5}; CONCURRENCY=${CONCURRENCY:-1}
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT

. bench/lib.sh
build_bins
start_fake
start_gateway routing "$realistic_config
[[providers]]
name = \"fake-b\"
base_url = \"$fake\"
[[providers]]
name = \"fake-c\"
base_url = \"$fake\"
[[models]]
name = \"fake-3\"
provider = \"fake\"
provider_model = \"fake-model\"
[[models.deployments]]
provider = \"fake-b\"
provider_model = \"fake-model\"
[[models.deployments]]
provider = \"fake-c\"
provider_model = \"fake-model\"
[prices.\"fake-3\"]
input_per_mtok = 2.5
output_per_mtok = 10"
configure_limits $(admin_of routing)
for model in fake-model fake-3; do
  lua "$(body long plain | sed "s/\"model\":\"fake-model\"/\"model\":\"$model\"/")" "$gw_key" > "$out/$model.lua"
done

printf "\nGatehouse routing benchmark, %s: realistic chain, ~1 KiB prompt, plain, %s s per cell, %s rounds, medians\n\n" \
  "$(date -u +%Y-%m-%d)" "$DURATION" "$ROUNDS"
printf "%4s | %10s %9s | %10s %9s | %s\n" conc "1 dep rps" "p50 us" "3 deps rps" "p50 us" "p50 difference"
for c in $CONCURRENCY; do
  r1=(); p1=(); r3=(); p3=()
  for _ in $(seq 1 "$ROUNDS"); do
    read -r a b _ _ < <(measure "$gw_url/v1/chat/completions" "$out/fake-model.lua" "$c"); r1+=("$a"); p1+=("$b")
    read -r a b _ _ < <(measure "$gw_url/v1/chat/completions" "$out/fake-3.lua" "$c"); r3+=("$a"); p3+=("$b")
  done
  python3 - "$c" "${r1[*]}" "${p1[*]}" "${r3[*]}" "${p3[*]}" <<'PY'
import statistics, sys
c, *cols = sys.argv[1:]
r1, p1, r3, p3 = ([float(x) for x in col.split()] for col in cols)
m = statistics.median
print(f"{c:>4} | {m(r1):>10.0f} {m(p1):>9.0f} | {m(r3):>10.0f} {m(p3):>9.0f} | {m(p3) - m(p1):+.0f} us")
PY
done
