#!/usr/bin/env python3
"""What a cap on escalation's depth would have bought: each recorded run's
replies cut after the first K (the first attempt counts as one), the
answer then being the leader of the replies kept under the same
confidence-weighted vote (weights: each reply's lowest group confidence,
as the loop weighs them). Answering all only: a cut run's calibrated
confidence, and so its abstention, cannot be replayed from the record.

    python3 results/compute-s27/depth.py NAME=RUN_DIR...

Unlike `results/compute-s19/caps.py`, whose `replay` also asks the
settled rule again after every reply, this cuts the recorded replies
only, so "as run" is the run's own reply count; the vote weight is
caps.py's.
"""
import json
import os
import sys
from collections import defaultdict

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "compute-s19"))
from caps import weight  # noqa: E402


def leader_right(replies):
    votes, right = defaultdict(float), {}
    for r in replies:
        if r["answer"] is None:
            continue
        votes[r["answer"]] += weight(r)
        right[r["answer"]] = r["correct"]
    if not votes:
        return False
    return right[max(votes, key=votes.get)]


def main(args):
    caps = [2, 3, 4, 5, 6, 8, None]
    head = "| run | problems | " + " | ".join(
        f"cap {c}" if c else "as run" for c in caps
    ) + " |"
    print(head)
    print("|" + "---|" * (len(caps) + 2))
    for arg in args:
        name, path = arg.split("=", 1)
        rows = [json.loads(l) for l in open(f"{path}/results.jsonl")]
        n = len(rows)
        cells = []
        for c in caps:
            kept = [r["samples"][:c] if c else r["samples"] for r in rows]
            right = sum(leader_right(k) for k in kept)
            tokens = sum(s["tokens"] for k in kept for s in k) / n
            cells.append(f"{right} right, {tokens:.0f} tok")
        print(f"| {name} | {n} | " + " | ".join(cells) + " |")
    print()
    print("Deep escalations (more than 4 replies): their share of the run's seconds, and how they ended")
    print()
    print("| run | problems | share of seconds | answered | answered right | right answering all | leader after 4 right |")
    print("|---|---|---|---|---|---|---|")
    for arg in args:
        name, path = arg.split("=", 1)
        rows = [json.loads(l) for l in open(f"{path}/results.jsonl")]
        deep = [r for r in rows if len(r["samples"]) > 4]
        share = sum(r["seconds"] for r in deep) / sum(r["seconds"] for r in rows)
        answered = [r for r in deep if r["decision"] == "answer"]
        print(
            f"| {name} | {len(deep)} of {len(rows)} | {share:.2f} | {len(answered)} | "
            f"{sum(r['correct'] for r in answered)} | {sum(r['candidate_correct'] for r in deep)} | "
            f"{sum(leader_right(r['samples'][:4]) for r in deep)} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
