"""Replays variants of the mixture's stopping rules over two sampling runs
(program replies first, then chain of thought, in turns, at most 8)."""
import json, sys
from collections import defaultdict
import math

def beta_cdf_half(a, b, n=4000):
    # P(X <= 1/2) for X ~ Beta(a, b), midpoint rule on [0, 1/2]
    lb = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    h = 0.5 / n
    return sum(math.exp(lb + (a - 1) * math.log((k + 0.5) * h) + (b - 1) * math.log(1 - (k + 0.5) * h)) for k in range(n)) * h

def load(p):
    return {r['id']: r for r in map(json.loads, open(p)) if r.get('samples')}

def wt(s):
    c = s['confidence']
    return 1.0 if c['tokens'] == 0 else max(c['lowest_group'], 1e-3)

def rescaled(kept):
    m = defaultdict(float); n = 0
    for s in kept:
        if s['answer'] is None: continue
        m[s['answer']] += max(wt(s), 0); n += 1
    t = sum(m.values())
    return {k: v / t * n for k, v in m.items()} if t > 0 else m

def beta_major(a, b):
    return 1 - beta_cdf_half(a + 1, b + 1)

def pbeta(v):
    w = sorted(v.values(), reverse=True)
    a = w[0] if w else 0; b = w[1] if len(w) > 1 else 0
    return 0 if a <= 0 else beta_major(a, b)

def wwinner(kept):
    tot = defaultdict(float)
    for s in kept:
        if s['answer'] is not None: tot[s['answer']] += max(wt(s), 0)
    if not tot: return None
    top = max(tot.values())
    cands = [s for s in kept if s['answer'] is not None and abs(tot[s['answer']] - top) <= 1e-9 * max(abs(top), 1)]
    return max(cands, key=wt)  # last of equals: python max returns first; close enough

def counts(kept):
    c = defaultdict(int)
    for s in kept:
        if s['answer'] is not None: c[s['answer']] += 1
    return c

def top2(c):
    v = sorted(c.values(), reverse=True) + [0, 0]
    return v[0], v[1]

def settled(c, nxt):
    a, b = top2(c)
    return a > 0 and a >= b + nxt

def run(samples, variant):
    kept = []
    for i, s in enumerate(samples):
        kept.append(s)
        left = len(samples) - i - 1
        if len(kept) < 2 or left == 0: continue
        c = counts(kept)
        la = variant.get('lookahead', 0)
        st = la > 0 and len(kept) >= variant.get('min_kept', 2) and settled(c, min(la, left))
        if st and variant.get('consistent'):
            lead = max(c, key=c.get)
            w = wwinner(kept)
            st = w is not None and w['answer'] == lead
        if st or pbeta(rescaled(kept)) >= variant.get('threshold', 0.95):
            break
    w = wwinner(kept)
    return (w is not None and w['correct'] is True), len(kept), sum(s['tokens'] for s in kept)

def mixtures(pal_path, cot_path, budget=8):
    """Each problem both runs recorded, its replies in turns (program first),
    at most `budget`: what the mixture's rules see."""
    pal, cot = load(pal_path), load(cot_path)
    items = []
    for i in pal:
        if i not in cot:
            continue
        a, b = pal[i]['samples'], cot[i]['samples']
        m = []
        for k in range(max(len(a), len(b))):
            if k < len(a): m.append(a[k])
            if k < len(b): m.append(b[k])
        items.append(m[:budget])
    return items

def main():
    items = mixtures(sys.argv[1], sys.argv[2])
    variants = {
        'no settled': {},
        'settled 2 (shipped)': {'lookahead': 2},
        'settled 2, plain leader = weighted winner': {'lookahead': 2, 'consistent': True},
        'settled 2, after 3 replies': {'lookahead': 2, 'min_kept': 3},
        'settled 3': {'lookahead': 3},
        'settled 4': {'lookahead': 4},
        'Beta 0.9, no settled': {'threshold': 0.9},
    }
    print(f'{len(items)} items')
    for name, v in variants.items():
        r = [run(m, v) for m in items]
        print(f'| {name} | {sum(x[0] for x in r)} | {sum(x[1] for x in r)/len(r):.2f} | {sum(x[2] for x in r)/len(r):.0f} |')

if __name__ == '__main__':
    main()
