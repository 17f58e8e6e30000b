#!/usr/bin/env bash
# Engine benchmark: metareason's llama.cpp engine next to llama.cpp's own
# speed through its C API (crates/llama/benches/reference/llama_ref.cpp),
# linked against the libraries this very build of llama-cpp-sys-2 produced
# (the crate vendors llama.cpp without its tools, so llama-bench cannot be
# built from the same version).
#   scripts/bench-engine.sh [MODEL ...]     (default: the 1.5B default and SmolLM2-135M)
# Output: a markdown table on stdout; raw results in bench-out/engine/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=bench-out/engine
mkdir -p "$out"
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(qwen2.5-coder-1.5b-instruct smollm2-135m-instruct)
threads=$(nproc)

# The reference links the llama.cpp libraries that this build of
# llama-cpp-sys-2 produced: same source, same compiler flags.
lib_out=$(cargo build --release --locked -p metareason --message-format=json 2>/dev/null | python3 -c '
import json,sys
out=""
for line in sys.stdin:
    m=json.loads(line)
    if m.get("reason")=="build-script-executed" and "llama-cpp-sys-2" in m.get("package_id",""):
        out=m["out_dir"]
print(out)')
[ -n "$lib_out" ] || { echo "cannot find llama-cpp-sys-2's build output" >&2; exit 1; }
g++ -O2 -std=c++17 crates/llama/benches/reference/llama_ref.cpp -I"$lib_out/include" -L"$lib_out/lib" \
  -lllama -lggml -lggml-cpu -lggml-base -fopenmp -lpthread -ldl -o target/llama_ref

echo "| model | engine | prompt tok/s | decode tok/s, 1 seq | total tok/s, 4 seqs | total tok/s, 8 seqs | 4 seqs / 1 seq |"
echo "|---|---|---|---|---|---|---|"
for m in "${models[@]}"; do
  path=$(target/release/metareason models path "$m" 2>/dev/null || target/release/metareason models fetch "$m")
  target/llama_ref "$path" 256 64 "$threads" 3 >"$out/llama-cpp-$m.json"
  cargo bench -q -p metareason-llama --bench engine -- "$m" --json "$PWD/$out/metareason-$m.json" >"$out/metareason-$m.md"
  python3 - "$m" "$out" <<'PY'
import json, sys
m, out = sys.argv[1], sys.argv[2]
ref = json.load(open(f"{out}/llama-cpp-{m}.json"))
ours = json.load(open(f"{out}/metareason-{m}.json"))[0]
f = lambda v: f"{v:.1f}" if isinstance(v, (int, float)) else "n/a"
keys = ["prompt_tok_s", "decode_tok_s_1", "decode_tok_s_4", "decode_tok_s_8"]
print(f"| {m} | llama.cpp C API (same build) | " + " | ".join(f(ref[k]) for k in keys) + f" | {ref['decode_tok_s_4']/ref['decode_tok_s_1']:.2f}x |")
print(f"| {m} | metareason | " + " | ".join(f"{f(ours[k])} ({ours[k]/ref[k]:.2f}x)" for k in keys) + f" | {ours['decode_tok_s_4']/ours['decode_tok_s_1']:.2f}x |")
t = ours["tree"]
print(f"| {m} | tree expansion, 7 calls x 2 samples | prompt tokens evaluated: {t['evaluated_with_cache']} with the prefix cache, {t['evaluated_without_cache']} without ({t['reused_with_cache']} re-used) | {t['seconds_with_cache']:.1f} s with, {t['seconds_without_cache']:.1f} s without | | | |")
PY
done
