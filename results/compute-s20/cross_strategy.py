#!/usr/bin/env python3
"""Replays recorded runs of the whole loop (every escalation reply recorded)
with three forms of the settled rule asked after every reply, to test whether
agreement within one strategy should count for less than agreement across
strategies:

  base   the shipped rule: stop once the leader is ahead by min(2, budget left)
  cross  the same, but only once the leader has votes from two strategies
  disc   votes of one strategy for one answer count 1 + d(n - 1) (d = 0.25-0.75)

    python3 cross_strategy.py RUN/results.jsonl [...]

Votes are weighted by each reply's lowest group confidence, as in the loop;
the first attempt (round 0, or the first reply where rounds were not
recorded) is never judged settled."""
import collections, json, os, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "compute-s19"))
from caps import BUDGET, weight  # noqa: E402

def eff(votes, d):
    # votes: list of strategies voting for one answer
    c = collections.Counter(votes)
    return sum(1 + d * (n - 1) for n in c.values())

def replay(rows, rule, d=0.5):
    out = []
    for r in rows:
        s = r["samples"]
        if not s or r.get("reference") is None: continue
        first = sum(1 for x in s if x.get("round") == 0) or 1
        by = collections.defaultdict(list)
        kept = len(s)
        for i, x in enumerate(s):
            if x["answer"] is not None: by[x["answer"]].append(x["strategy"])
            # Look-ahead: what is left of escalation's budget (not of the
            # recorded replies: a run that stopped early still had budget left).
            left = BUDGET - (i + 1 - first)
            if i < first or left <= 0 or i == len(s) - 1: continue
            if rule == "base" or rule == "cross":
                cnt = sorted(((len(v), k) for k, v in by.items()), reverse=True) + [(0, None)] * 2
                (a, ka), (b, _) = cnt[0], cnt[1]
                ok = a > 0 and a >= b + min(2, left)
                if rule == "cross" and ok and len(set(by[ka])) < 2: ok = False
            else:
                cnt = sorted(((eff(v, d), k) for k, v in by.items()), reverse=True) + [(0, None)] * 2
                (a, ka), (b, _) = cnt[0], cnt[1]
                ok = a > 0 and a >= b + min(2, left) - 1e-9
            if ok:
                kept = i + 1; break
        k = s[:kept]
        votes = collections.defaultdict(float)
        for x in k:
            if x["answer"] is not None: votes[x["answer"]] += weight(x)
        ans = max(votes, key=votes.get) if votes else None
        right = ans is not None and any(x["answer"] == ans and x["correct"] for x in k)
        out.append((r["id"], right, kept, sum(x["tokens"] for x in k)))
    return out

for path in sys.argv[1:]:
    rows = [json.loads(l) for l in open(path)]
    print(path)
    res = {}
    for rule, d in [("base", 0), ("cross", 0), ("disc", 0.5), ("disc", 0.75), ("disc", 0.25)]:
        o = replay(rows, rule, d); n = len(o); res[(rule, d)] = o
        print(f"  {rule} {d}: right {sum(x[1] for x in o)}/{n} replies {sum(x[2] for x in o)/n:.2f} tokens {sum(x[3] for x in o)/n:.0f}")
    b = {x[0]: x[1] for x in res[("base", 0)]}
    c = {x[0]: x[1] for x in res[("cross", 0)]}
    print("   cross gains", [k for k in b if c[k] and not b[k]], "losses", [k for k in b if b[k] and not c[k]])
