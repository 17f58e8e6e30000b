#!/usr/bin/env python3
"""Replays a recorded run of the whole loop with the settled rule asked after
every reply (as `metareason bench replay` does), optionally capped at N
replies, and prints accuracy, replies and sampled tokens per problem, and
where the tokens go by the number of replies drawn.

    python3 caps.py RUN/results.jsonl [RUN/results.jsonl ...]

Votes are weighted by each reply's lowest group confidence, as in the loop.
The first attempt (round 0) is never judged settled; the look-ahead is a
cycle of two replies (a program and a chain of thought), less where
escalation's budget (BUDGET replies after the first attempt) leaves fewer."""
import collections
import json
import sys

# Escalation's budget of replies after the first attempt
# (`escalation.max_samples` in the runs' manifests).
BUDGET = 8


def weight(s):
    return max(s["confidence"]["lowest_group"], 1e-3)


def replay(rows, cap=None, budget=BUDGET):
    out = []
    for r in rows:
        s = r["samples"]
        if not s or r.get("reference") is None:
            continue
        first = sum(1 for x in s if x.get("round") == 0) or 1
        counts = collections.Counter()
        kept = len(s)
        for i, x in enumerate(s):
            if x["answer"] is not None:
                counts[x["answer"]] += 1
            # The look-ahead is a cycle of two replies, less what is left of
            # escalation's budget, not less what was recorded: a run that
            # stopped early still had budget left.
            recorded_after = len(s) - i - 1
            left = budget - (i + 1 - first)
            top = counts.most_common(2) + [(None, 0), (None, 0)]
            a, b = top[0][1], top[1][1]
            if i >= first and recorded_after > 0 and left > 0 and a > 0 and a >= b + min(2, left):
                kept = i + 1
                break
            if cap and i + 1 >= cap:
                kept = i + 1
                break
        k = s[:kept]
        votes = collections.defaultdict(float)
        for x in k:
            if x["answer"] is not None:
                votes[x["answer"]] += weight(x)
        answer = max(votes, key=votes.get) if votes else None
        right = answer is not None and any(x["answer"] == answer and x["correct"] for x in k)
        out.append((right, kept, sum(x["tokens"] for x in k)))
    return out


def main():
    for path in sys.argv[1:]:
        rows = [json.loads(line) for line in open(path)]
        print(path)
        for cap in [None, 7, 5, 4, 3]:
            o = replay(rows, cap)
            n = len(o)
            print(
                f"  at most {cap or 'the budget of'} replies: right {sum(x[0] for x in o)}/{n}, "
                f"replies {sum(x[1] for x in o) / n:.2f}, tokens {sum(x[2] for x in o) / n:.0f}"
            )
        o = replay(rows)
        n = len(o)
        by = collections.defaultdict(lambda: [0, 0, 0])
        for right, kept, tokens in o:
            by[kept][0] += 1
            by[kept][1] += right
            by[kept][2] += tokens
        for kept in sorted(by):
            c, r, t = by[kept]
            print(f"  {kept} replies: {c} problems, {r} right, {t / n:.0f} of the tokens per problem")


if __name__ == "__main__":
    main()
