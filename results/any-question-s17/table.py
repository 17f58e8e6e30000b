#!/usr/bin/env python3
"""The README's table of declining, from bench results.jsonl files.

usage: table.py LABEL=RUN_DIR [LIMIT] ...  (LIMIT: only the first N items)
"""
import json, sys

def prf(pred, truth):
    tp = sum(p and t for p, t in zip(pred, truth))
    fp = sum(p and not t for p, t in zip(pred, truth))
    fn = sum(t and not p for p, t in zip(pred, truth))
    prec = tp / (tp + fp) if tp + fp else None
    rec = tp / (tp + fn) if tp + fn else None
    f1 = 2 * prec * rec / (prec + rec) if prec and rec else (0.0 if prec is not None and rec is not None else None)
    return prec, rec, f1

def two(x):
    return "–" if x is None else f"{x:.2f}"

print("| set and configuration | items | should decline | declined (as unanswerable) | precision | recall | F1 (any decline) | over-declining | precision | recall | F1 (declared unanswerable) | answerable declared unanswerable | answerable answered right | tokens / item | s / item |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
args = sys.argv[1:]
i = 0
while i < len(args):
    label, path = args[i].split("=", 1)
    limit = None
    if i + 1 < len(args) and args[i + 1].isdigit():
        limit = int(args[i + 1]); i += 1
    i += 1
    rows = [json.loads(l) for l in open(f"{path}/results.jsonl") if l.strip()]
    # results are written as items finish; the subset order is the item order
    rows = rows[:limit] if limit else rows
    truth = [r["should_decline"] for r in rows]
    declined = [r["decision"] != "answer" for r in rows]
    unanswerable = [r.get("grounds") == "unanswerable" for r in rows]
    p1, r1, f1 = prf(declined, truth)
    p2, r2, f2 = prf(unanswerable, truth)
    answerable = [r for r in rows if not r["should_decline"]]
    over = sum(r["decision"] != "answer" for r in answerable) / max(1, len(answerable))
    over_u = sum(r.get("grounds") == "unanswerable" for r in answerable) / max(1, len(answerable))
    graded = [r for r in answerable if r.get("reference") is not None]
    right = sum(bool(r.get("correct")) and r["decision"] == "answer" for r in graded)
    n = len(rows)
    tokens = sum(r["generated_tokens"] for r in rows) / n
    secs = sum(r["seconds"] for r in rows) / n
    print(f"| {label} | {n} | {sum(truth)} | {sum(declined)} ({sum(unanswerable)}) | {two(p1)} | {two(r1)} | **{two(f1)}** | {over:.2f} | {two(p2)} | {two(r2)} | **{two(f2)}** | {over_u:.2f} | {right}/{len(graded)} | {tokens:.0f} | {secs:.1f} |")
