#!/usr/bin/env bash
# Nightly-style fuzzing: runs every cargo-fuzz target in fuzz/ for a bounded time and keeps
# each target's corpus in fuzz/corpus/<target> (grown runs start from it). Not part of CI:
# it needs a nightly toolchain and minutes per target. Usage:
#   bash scripts/fuzz.sh [seconds-per-target, default 60] [target ...]
# Exits non-zero on the first target that finds a crash (the input is in fuzz/artifacts/).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
shift || true
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz.sh: needs a nightly toolchain (rustup toolchain install nightly)" >&2
  exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo +nightly install cargo-fuzz --locked
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  echo "== $t (${secs}s)"
  cargo +nightly fuzz run "$t" "fuzz/corpus/$t" -- -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 \
    2>&1 | grep -E '^(#[0-9]+.*DONE|Done|==[0-9]+==|SUMMARY|.*panicked)' || true
  if [ -n "$(ls -A "fuzz/artifacts/$t" 2>/dev/null)" ]; then
    echo "fuzz.sh: $t found a crash: fuzz/artifacts/$t" >&2
    exit 1
  fi
done
echo "fuzz.sh: ${#targets[@]} targets ran ${secs}s each without a finding"
