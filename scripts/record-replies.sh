#!/usr/bin/env bash
# Records real replies of a model for the answer-extraction tests: each
# strategy on questions of each answer kind it is offered for, greedy, one
# JSON line per reply in crates/solver/tests/fixtures/replies.jsonl (the
# "expected" field is filled in by hand afterwards, from reading the reply).
#   scripts/record-replies.sh [MODEL]        (default: the default model)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-target}/release/metareason"
model="${1:-qwen2.5-coder-1.5b-instruct}"
out=crates/solver/tests/fixtures/replies.new.jsonl   # review, fill "expected", then rename to replies.jsonl
: > "$out"
record() { # strategy kind question
  "$bin" --model "$model" solve "$3" --strategy "$1" --answer "$2" --no-memory --no-probes \
      --cross-check never --revisions 0 --backtrack 0 --no-fallback --no-abstain --json 2>/dev/null |
    python3 -c '
import json, sys
r = json.load(sys.stdin)
a = r["solve"]["attempts"][0]
c = a["outcome"]["candidates"][a["outcome"]["chosen"]]
print(json.dumps({"strategy": sys.argv[1], "answer_kind": sys.argv[2], "question": sys.argv[3],
                  "reply": c["text"], "model": r["solve"]["model"]["name"], "expected": None}))
' "$1" "$2" "$3" >> "$out"
}
for q in "A baker makes 24 muffins and sells 3 boxes of 6. How many muffins are left?" \
         "Tom has \$120. He spends a quarter on books and \$15 on lunch. How much money does he have left?" \
         "A train travels 180 km in 2.5 hours. What is its average speed in km per hour?"; do
  record chain_of_thought number "$q"; record program_aided number "$q"; record plan_then_solve number "$q"
done
for q in "Is 91 a prime number?" "Does water boil at a lower temperature at high altitude?" "Is the Great Wall of China visible from the Moon with the naked eye?"; do
  record direct yes_no "$q"; record chain_of_thought yes_no "$q"
done
for q in $'Which planet is the largest?\nA) Mars\nB) Jupiter\nC) Venus\nD) Earth' \
         $'What is the freezing point of water in Fahrenheit?\nA) 0\nB) 32\nC) 100\nD) 212'; do
  record direct choice:ABCD "$q"; record chain_of_thought choice:ABCD "$q"
done
for q in "Who wrote Hamlet?" "What does CPU stand for?" "What is the capital of Australia?" "When did Neil Armstrong land on the Moon?"; do
  record direct text "$q"; record chain_of_thought text "$q"
done
for q in "How do I stop a nosebleed?" "Explain why the sky is blue in two sentences." "Write a haiku about autumn."; do
  record respond free_text "$q"
done
echo "recorded $(wc -l < "$out") replies in $out" >&2
