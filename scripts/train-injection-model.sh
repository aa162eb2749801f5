#!/usr/bin/env bash
# Trains the learned prompt-injection scorer on the committed corpus and rewrites
# crates/gatehouse-guardrails/model/injection.{bin,md}. Deterministic: the same corpus gives
# the same bytes (the .md records both SHA-256s). To change what it learns from, regenerate
# the corpus first (scripts/guardrails-corpus.py, its header says how;
# scripts/guardrails-corpus-lookalikes.py for the benign look-alikes).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -j2 -q --release -p gatehouse-guardrails --example train_injection -- \
  tests/data/guardrails/injection.jsonl tests/data/guardrails/injection_lookalikes.jsonl \
  crates/gatehouse-guardrails/model
