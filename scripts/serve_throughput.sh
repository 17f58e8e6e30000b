#!/usr/bin/env bash
# Throughput of `metareason serve` on the default model with 1, 4 and 16
# concurrent clients (scripts/loadtest.py), each run on a fresh memory.
# Usage: scripts/serve_throughput.sh [MODEL_NAME] [OUT_DIR]   (env THREADS, CONFIG)
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-qwen2.5-coder-1.5b-instruct}"
out="${2:-bench-out/serve-throughput}"
threads="${THREADS:-2}"
config="${CONFIG:-metareason}"
bin="${METAREASON_BIN:-target/release/metareason}"
mkdir -p "$out"
for spec in "1 8" "4 2" "16 1"; do
  set -- $spec
  clients=$1; requests=$2
  mem="$out/memory-$clients.sqlite"; rm -f "$mem"*
  log="$out/server-$clients.log"
  "$bin" --model "$model" --threads "$threads" serve --port 0 --memory "$mem" --max-concurrent 4 --max-queue 32 2>"$log" &
  pid=$!
  for _ in $(seq 1 600); do grep -q " on http://" "$log" && break; sleep 0.5; done
  base=$(grep -o 'http://[0-9.:]*/v1' "$log" | head -1)
  python3 scripts/loadtest.py "$base" --clients "$clients" --requests "$requests" \
    --model "$config" --max-tokens 512 | tee "$out/clients-$clients.json"
  kill -TERM "$pid"; wait "$pid" || true
done
