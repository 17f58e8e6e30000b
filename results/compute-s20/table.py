#!/usr/bin/env python3
"""The ablation table of results/compute-s20/README.md from run summaries.

    python3 table.py RUN_DIR [RUN_DIR ...]
"""
import json
import sys

print("| configuration | right, answering all | answered (coverage) | answered right | ECE | AUROC | tokens / problem |")
print("|---|---|---|---|---|---|---|")
for d in sys.argv[1:]:
    s = json.load(open(f"{d}/summary.json"))
    m = s["summary"]
    rows = [json.loads(l) for l in open(f"{d}/results.jsonl")]
    n = len(rows)
    right_all = sum(bool(r["candidate_correct"]) for r in rows)
    answered = [r for r in rows if r["decision"] == "answer"]
    right = sum(bool(r["correct"]) for r in answered)
    print(
        f"| {s['config']} | {right_all}/{n} | {len(answered)} ({len(answered) / n:.2f}) | "
        f"{right}/{len(answered)} ({right / max(len(answered), 1):.3f}) | {m['ece']['value']:.3f} | "
        f"{m['auroc']['value']:.3f} | {m['generated_tokens']:.0f} |"
    )
