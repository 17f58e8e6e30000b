"""The best any stopping rule could do over a mixture's replies: per problem,
the weighted-vote answer of each prefix (1..8 replies) and its tokens; an
oracle that knows the reference stops at the cheapest right prefix, and
spends a token budget on the problems cheapest to get right first."""
import json, sys
from collections import defaultdict

def load(p):
    return {r['id']: r for r in map(json.loads, open(p)) if r.get('samples')}

def wt(s):
    c = s['confidence']
    return 1.0 if c['tokens'] == 0 else max(c['lowest_group'], 1e-3)

def winner_right(kept, weighted=True):
    tot = defaultdict(float)
    for s in kept:
        if s['answer'] is not None:
            tot[s['answer']] += wt(s) if weighted else 1.0
    if not tot:
        return False
    top = max(tot.values())
    cands = [s for s in kept if s['answer'] is not None and abs(tot[s['answer']] - top) <= 1e-9 * max(top, 1)]
    best = max(cands, key=wt)
    return best['correct'] is True

first, second, sc8_tokens = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
ids = [i for i in first if i in second]
costs = []
for i in ids:
    a, b = first[i]['samples'], second[i]['samples']
    m = []
    for k in range(max(len(a), len(b))):
        if k < len(a): m.append(a[k])
        if k < len(b): m.append(b[k])
    m = m[:8]
    cheapest = None
    for k in range(1, len(m) + 1):
        if winner_right(m[:k]):
            cheapest = sum(s['tokens'] for s in m[:k])
            break
    costs.append(cheapest)
n = len(ids)
reachable = sorted(c for c in costs if c is not None)
print(f'{n} problems; some prefix of the mixture is right on {len(reachable)}')
for share in (0.25, 0.35, 0.5, 0.61):
    budget = share * sc8_tokens * n
    spent = right = 0
    for c in reachable:
        if spent + c > budget: break
        spent += c; right += 1
    print(f'budget {share:.0%} of SC@8 ({share*sc8_tokens:.0f} tokens/problem): at most {right} right')
