#!/usr/bin/env bash
# The new user's path: set up the machine, build, and run metareason with the
# given arguments. Known models (the default included) are fetched on first use.
#   scripts/run.sh generate "What is 17 * 23?"
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked -p metareason >&2
bin="${CARGO_TARGET_DIR:-target}/release/metareason"
# The sentence embedder for memory search (91 MB); without it metareason
# falls back to the language model's own embeddings.
"$bin" models path all-minilm-l6-v2 >/dev/null 2>&1 || "$bin" models fetch all-minilm-l6-v2 >&2 || true
exec "$bin" "$@"
