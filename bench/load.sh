#!/usr/bin/env bash
# The headline load benchmark: the whole chain as users run it, beside the direct baseline, in
# one run. wrk drives client -> fake provider directly and client -> gateway -> fake provider,
# alternating within each round, for every cell of
#   gateway: `default` (the embedded default + one provider) and `realistic` (plus rates and
#            budgets on key, project and org, prices, usage ledger; audit of every request and
#            guardrails at their defaults, as in the default) — and `redis` (the realistic chain
#            with limits on Redis) when Redis answers at $REDIS_URL;
#   prompt: short (one line) and long (~1 KiB: system prompt + user message);
#   mode: plain and streamed (8 content events + usage + [DONE]);
#   concurrency: 1, 16, 64.
# Prints medians (with the spread of the gateway's RPS over the rounds), the added p50, the
# RPS ratio and p99/p50, then the headline cells against the targets of issue #15, and the
# gateway's idle and peak RSS.
#
#   bash bench/load.sh            # 10 s per cell, 3 rounds (~35 min with Redis)
#   bash bench/load.sh --quick    # realistic chain, long prompt, c = 1 and 16, 3 s, 1 round
#   DURATION=5 ROUNDS=3 CONCURRENCY="1 16" GATEWAYS="realistic" PROMPTS=long bash bench/load.sh
#   UNIQUE=1 bash bench/load.sh --quick   # every user message new (only the system prompt repeats)
#   bash bench/load.sh --providers # the provider dimension: bench/providers-load.sh
#
# --quick exits non-zero when a headline figure is worse than half its target (an RPS ratio
# below half the target, an added p50 above twice it): a gross regression is loud. Everything
# runs on loopback and shares this machine's cores: compare ratios from one run.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${1:-}" = "--providers" ] && exec bash bench/providers-load.sh
quick=false
[ "${1:-}" = "--quick" ] && quick=true
if $quick; then
  DURATION=${DURATION:-3}; ROUNDS=${ROUNDS:-1}; CONCURRENCY=${CONCURRENCY:-"1 16"}
  GATEWAYS=${GATEWAYS:-realistic}; PROMPTS=${PROMPTS:-long}
else
  DURATION=${DURATION:-10}; ROUNDS=${ROUNDS:-3}; CONCURRENCY=${CONCURRENCY:-"1 16 64"}
  GATEWAYS=${GATEWAYS:-"default realistic redis"}; PROMPTS=${PROMPTS:-"short long"}
fi
export BENCH_REDIS=${REDIS_URL:-redis://127.0.0.1:6379/0}
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT

. bench/lib.sh
build_bins
start_fake
declare -A url key pid
for g in $GATEWAYS; do
  if [ "$g" = redis ]; then
    host=${BENCH_REDIS#redis://}; host=${host%%/*}
    if ! (exec 3<>"/dev/tcp/${host%:*}/${host#*:}") 2>/dev/null; then
      echo "Redis not reachable at $BENCH_REDIS: the redis gateway is left out" >&2
      continue
    fi
  fi
  start_chain "$g" "$g"
  url[$g]=$gw_url; key[$g]=$gw_key; pid[$g]=$gw_pid
done
sleep 1
declare -A idle
for g in "${!url[@]}"; do idle[$g]=$(awk '/VmRSS/ {print $2}' /proc/${pid[$g]}/status); done
for p in $PROMPTS; do
  for m in plain stream; do
    lua "$(body "$p" "$m")" "" > "$out/direct_${p}_$m.lua"
    for g in "${!url[@]}"; do lua "$(body "$p" "$m")" "${key[$g]}" > "$out/${g}_${p}_$m.lua"; done
  done
done

printf "\nGatehouse load benchmark, %s: %s s per cell, %s round(s), medians; wrk, gateway and fake provider share %s cores%s\n\n" \
  "$(date -u +%Y-%m-%d)" "$DURATION" "$ROUNDS" "$(nproc)" "$([ "${UNIQUE:-0}" = 1 ] && echo "; every user message unique")"
printf "%-9s %-5s %-6s %4s | %9s %7s %7s | %9s %6s %7s %7s | %9s %6s %7s %6s\n" \
  gateway prompt mode conc "direct" p50us p99us "gw rps" "±" p50us p99us "added p50" ratio p99/p50 non2xx
results="$out/results.txt"
for g in $GATEWAYS; do
  [ -n "${url[$g]:-}" ] || continue
  for p in $PROMPTS; do
    for m in plain stream; do
      for c in $CONCURRENCY; do
        dr=(); dp50=(); dp99=(); gr=(); gp50=(); gp99=(); errs=0
        for _ in $(seq 1 "$ROUNDS"); do
          read -r a b d e < <(measure "$fake/chat/completions" "$out/direct_${p}_$m.lua" "$c")
          dr+=("$a"); dp50+=("$b"); dp99+=("$d"); errs=$((errs + e))
          read -r a b d e < <(measure "${url[$g]}/v1/chat/completions" "$out/${g}_${p}_$m.lua" "$c")
          gr+=("$a"); gp50+=("$b"); gp99+=("$d"); errs=$((errs + e))
        done
        python3 - "$g" "$p" "$m" "$c" "$errs" "${dr[*]}" "${dp50[*]}" "${dp99[*]}" "${gr[*]}" "${gp50[*]}" "${gp99[*]}" <<'PY' | tee -a "$results"
import statistics, sys
g, p, m, c, errs, *cols = sys.argv[1:]
dr, dp50, dp99, gr, gp50, gp99 = ([float(x) for x in col.split()] for col in cols)
med = statistics.median
spread = (max(gr) - min(gr)) / 2
print(f"{g:<9} {p:<5} {m:<6} {c:>4} | {med(dr):>9.0f} {med(dp50):>7.0f} {med(dp99):>7.0f} | {med(gr):>9.0f} {spread:>6.0f} "
      f"{med(gp50):>7.0f} {med(gp99):>7.0f} | {med(gp50) - med(dp50):>7.0f}us {med(gr) / med(dr):>6.0%} {med(gp99) / med(gp50):>7.1f} {errs:>6}")
PY
      done
    done
  done
done
for g in "${!url[@]}"; do
  python3 -c 'import sys; print(f"{sys.argv[1]} gateway RSS: idle {int(sys.argv[2]) / 1024:.1f} MiB, peak {int(sys.argv[3]) / 1024:.1f} MiB")' \
    "$g" "${idle[$g]}" "$(awk '/VmHWM/ {print $2}' /proc/${pid[$g]}/status)"
done

# The headline cells (realistic chain, long prompt if measured) against issue #15's targets.
python3 - "$results" "$quick" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
quick = sys.argv[2] == "true"
def cell(mode, conc):
    for prompt in ("long", "short"):
        for r in rows:
            if r[0] == "realistic" and r[1] == prompt and r[2] == mode and r[3] == conc:
                return r
    return None
# (what, mode, concurrency, target, higher is better)
targets = [("added p50, plain, c=1", "plain", "1", 60, False),
           ("added p50, whole stream, c=1", "stream", "1", 120, False),
           ("RPS vs direct, plain, c=16", "plain", "16", 35, True),
           ("RPS vs direct, streamed, c=16", "stream", "16", 30, True)]
gross = False
print("\nheadline (realistic chain) against the targets:")
for what, mode, conc, target, higher in targets:
    r = cell(mode, conc)
    if r is None:
        continue
    # columns: ... | added("123us") ratio("15%") ...
    bar = r.index("|", r.index("|", r.index("|") + 1) + 1)
    value = float(r[bar + 1].rstrip("us")) if not higher else float(r[bar + 2].rstrip("%"))
    unit = "%" if higher else " us"
    met = value >= target if higher else value <= target
    bad = value < target / 2 if higher else value > target * 2
    gross |= bad
    verdict = "met" if met else ("MORE THAN 2x OFF" if bad else "missed")
    print(f"  {what:<32} {value:>7.0f}{unit}   target {target}{unit}   {verdict}")
# p99 at c = 16 (target: at most 3x p50), beside the direct baseline's own tail in the same
# cells: on shared cores wrk and the fake provider have a tail of their own
for mode in ("plain", "stream"):
    r = cell(mode, "16")
    if r is None:
        continue
    bars = [i for i, x in enumerate(r) if x == "|"]
    direct_tail = float(r[bars[0] + 3]) / float(r[bars[0] + 2])
    tail = float(r[bars[2] + 3])
    verdict = "met" if tail <= 3 else "missed"
    print(f"  {'p99/p50, ' + mode + ', c=16':<32} {tail:>7.1f}x   target 3x   {verdict} (direct's own: {direct_tail:.1f}x)")
if quick and gross:
    sys.exit("a headline figure is worse than half its target")
PY
