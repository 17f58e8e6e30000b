#!/usr/bin/env python3
"""SC@8 (possibly partial) against greedy chain of thought and the whole
loop recorded on the package's 100 GSM8K problems (results/gsm8k-2eb47cd),
on the problems SC@8 has reached. The loop is also replayed with the
settled rule asked after every reply (as `bench replay` and
results/compute-s19/caps.py do).

    python3 sc8_vs_loop.py SC8_RUN_DIR
"""
import collections
import json
import sys


def load(path):
    return {json.loads(l)["id"]: json.loads(l) for l in open(path)}


def settled_per_reply(r):
    s = r["samples"]
    first = sum(1 for x in s if x.get("round") == 0) or 1
    counts = collections.Counter()
    kept = len(s)
    for i, x in enumerate(s):
        if x["answer"] is not None:
            counts[x["answer"]] += 1
        left = len(s) - i - 1
        top = counts.most_common(2) + [(None, 0), (None, 0)]
        a, b = top[0][1], top[1][1]
        if i >= first and left > 0 and a > 0 and a >= b + min(2, left):
            kept = i + 1
            break
    k = s[:kept]
    votes = collections.defaultdict(float)
    for x in k:
        if x["answer"] is not None:
            votes[x["answer"]] += max(x["confidence"]["lowest_group"], 1e-3)
    answer = max(votes, key=votes.get) if votes else None
    right = answer is not None and any(x["answer"] == answer and x["correct"] for x in k)
    return right, sum(x["tokens"] for x in k)


sc = load(f"{sys.argv[1]}/results.jsonl")
greedy = load("results/gsm8k-2eb47cd/greedy_cot/results.jsonl")
loop = load("results/gsm8k-2eb47cd/full/results.jsonl")
ids = list(sc)
n = len(ids)
print(f"on the first {n} problems of the seeded order")
print("| configuration | right, answering all | tokens / problem |")
print("|---|---|---|")
for name, runs in [("greedy chain of thought (2eb47cd)", greedy), ("self-consistency@8 (this run)", sc),
                   ("the whole loop, live (2eb47cd)", loop)]:
    right = sum(bool(runs[i]["candidate_correct"]) for i in ids)
    tokens = sum(runs[i]["generated_tokens"] for i in ids) / n
    print(f"| {name} | {right}/{n} | {tokens:.0f} |")
rep = [settled_per_reply(loop[i]) for i in ids]
print(f"| the whole loop, settled asked after every reply (replayed; sampled tokens) | {sum(r for r, _ in rep)}/{n} | {sum(t for _, t in rep) / n:.0f} |")
