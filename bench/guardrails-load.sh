#!/usr/bin/env bash
# The data-plane cost of the guardrails: two gateways on the same fake provider, one with every
# detector off (`secret` and `pii` by name: a category key is more specific than `*`, so `*`
# alone leaves the built-in defaults on), one with every detector on in both directions (PII and secrets redact, prompt
# injection flags, so nothing in the prompt changes and the work is pure scanning), plus the
# direct baseline, in alternating rounds of the same run. The prompt is ~1 KiB of ordinary text,
# new in every request (a number in front), so each is scanned: the gateway remembers the
# analysis of a text it has seen (docs/GUARDRAILS.md, "Performance"); UNIQUE=0 sends the same
# text every time and measures that instead. Prints medians and the added p50 of the guardrails.
#
#   bash bench/guardrails-load.sh                  # 10 s per cell, 3 rounds, c = 1 and 16
#   DURATION=5 ROUNDS=2 CONCURRENCY=1 bash bench/guardrails-load.sh
#   STREAM=1 bash bench/guardrails-load.sh         # streamed answers (held back and re-framed),
#                                                  # then time to first token (below)
#
# With STREAM=1 it also measures time to first token (bench/ttft.py: sequential requests, the
# first event with answer text) against a fake that streams 10 tokens TOKEN_MS (default 20)
# apart: direct, guardrails off, output guardrails on with the default buffered release, and
# on with `stream_release = "early"`.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONCURRENCY=${CONCURRENCY:-"1 16"}
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT

. bench/lib.sh
build_bins
start_fake
start_gateway off '[audit]
data_plane = "denials"
[guardrails]
detectors = { "*" = { input = "off", output = "off" }, secret = { input = "off", output = "off" }, pii = { input = "off", output = "off" }, prompt_injection = { input = "off", output = "off" } }'
off_url=$gw_url; off_key=$gw_key
start_gateway on '[audit]
data_plane = "denials"
[guardrails]
detectors = { "*" = { input = "redact", output = "redact" }, secret = { input = "redact", output = "redact" }, pii = { input = "redact", output = "redact" }, prompt_injection = { input = "flag", output = "flag" } }'
on_url=$gw_url; on_key=$gw_key; on_pid=$gw_pid
sleep 1

# ~1 KiB of ordinary prose (no values any detector would act on)
text=$(python3 -c '
s = ("The quarterly review covered the migration of the billing service to the new cluster, "
     "the rollout plan for the search feature, and the budget for the next two sprints. "
     "Please summarise the main risks, list the open questions, and suggest an order for the work. ")
print((s * 5)[:1024])')
[ "${UNIQUE:-1}" = 1 ] && text="@N@ $text"
stream=false
[ "${STREAM:-0}" = 1 ] && stream=true
body="{\"model\":\"fake-model\",\"stream\":$stream,\"messages\":[{\"role\":\"user\",\"content\":\"$text\"}],\"max_tokens\":64}"
lua "$body" "" > "$out/direct.lua"
lua "$body" "$off_key" > "$out/off.lua"
lua "$body" "$on_key" > "$out/on.lua"

printf "\nGuardrail cost: %s s per cell, %s round(s), medians, %s-byte prompt, stream=%s; %s cores shared\n\n" "$DURATION" "$ROUNDS" "${#text}" "$stream" "$(nproc)"
printf "%4s | %9s | %10s %9s | %10s %9s | %s\n" conc "direct p50" "off rps" "off p50" "on rps" "on p50" "guardrails add"
for c in $CONCURRENCY; do
  d=(); fr=(); fp=(); nr=(); np=()
  for _ in $(seq 1 "$ROUNDS"); do
    read -r _ b _ _ < <(measure "$fake/chat/completions" "$out/direct.lua" "$c"); d+=("$b")
    read -r a b _ e1 < <(measure "$off_url/v1/chat/completions" "$out/off.lua" "$c"); fr+=("$a"); fp+=("$b")
    read -r a b _ e2 < <(measure "$on_url/v1/chat/completions" "$out/on.lua" "$c"); nr+=("$a"); np+=("$b")
    if [ "$e1" != 0 ] || [ "$e2" != 0 ]; then echo "non-2xx answers: off $e1, on $e2" >&2; exit 1; fi
  done
  python3 - "$c" "$(median "${d[@]}")" "$(median "${fr[@]}")" "$(median "${fp[@]}")" "$(median "${nr[@]}")" "$(median "${np[@]}")" <<'PY'
import sys
c, d, fr, fp, nr, np = sys.argv[1], *map(float, sys.argv[2:])
print(f"{c:>4} | {d:>7.0f}us | {fr:>10.0f} {fp:>7.0f}us | {nr:>10.0f} {np:>7.0f}us | p50 {np - fp:+.0f}us ({np / fp - 1:+.1%}), rps {nr / fr - 1:+.1%}")
PY
done
printf "\nguardrails-on gateway RSS peak %.1f MiB\n" "$(awk '/VmHWM/ {print $2 / 1024}' /proc/$on_pid/status)"

if [ "${STREAM:-0}" = 1 ]; then
  token_ms=${TOKEN_MS:-20}
  "$target/$profile/fake-provider" 127.0.0.1:0 10 "$token_ms" > "$out/slow.txt" &
  for _ in $(seq 1 100); do grep -q "listening on" "$out/slow.txt" && break; sleep 0.1; done
  fake=$(sed -n 's/^listening on //p' "$out/slow.txt")
  all_on='detectors = { "*" = { input = "redact", output = "redact" }, secret = { input = "redact", output = "redact" }, pii = { input = "redact", output = "redact" }, prompt_injection = { input = "flag", output = "flag" } }'
  start_gateway ttft_off "[guardrails]
detectors = { \"*\" = { input = \"off\", output = \"off\" }, secret = { input = \"off\", output = \"off\" }, pii = { input = \"off\", output = \"off\" }, prompt_injection = { input = \"off\", output = \"off\" } }"
  t_off=("$gw_url" "$gw_key")
  start_gateway ttft_buffered "[guardrails]
$all_on"
  t_buf=("$gw_url" "$gw_key")
  start_gateway ttft_early "[guardrails]
stream_release = \"early\"
$all_on"
  t_early=("$gw_url" "$gw_key")
  sleep 1
  printf "\nTime to first token: %s sequential requests each, medians; the fake streams 10 tokens %s ms apart\n\n" "${TTFT_REQUESTS:-30}" "$token_ms"
  printf "%-34s | %9s | %9s\n" "" "ttft" "whole"
  ttft() { # $1 label, $2 url, $3 key
    read -r first whole < <(python3 bench/ttft.py "$2/chat/completions" "$3" "${TTFT_REQUESTS:-30}")
    printf "%-34s | %7.2fms | %7.2fms\n" "$1" "$first" "$whole"
  }
  ttft "direct" "$fake" ""
  ttft "gateway, guardrails off" "${t_off[0]}/v1" "${t_off[1]}"
  ttft "output guardrails, buffered" "${t_buf[0]}/v1" "${t_buf[1]}"
  ttft "output guardrails, early release" "${t_early[0]}/v1" "${t_early[1]}"
fi
