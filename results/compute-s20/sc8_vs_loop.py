#!/usr/bin/env python3
"""SC@8 (possibly partial) against greedy chain of thought and the whole
loop recorded on the package's 100 GSM8K problems (results/gsm8k-2eb47cd),
on the problems SC@8 has reached. The loop is also replayed with the
settled rule asked after every reply (as `bench replay` and
results/compute-s19/caps.py do).

    python3 sc8_vs_loop.py SC8_RUN_DIR
"""
import json
import os
import sys

# The settled rule asked after every reply, as caps.py replays it.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "compute-s19"))
from caps import replay  # noqa: E402


def load(path):
    return {json.loads(l)["id"]: json.loads(l) for l in open(path)}


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
rep = replay([loop[i] for i in ids])
print(f"| the whole loop, settled asked after every reply (replayed; sampled tokens) | {sum(r for r, _, _ in rep)}/{n} | {sum(t for _, _, t in rep) / n:.0f} |")
