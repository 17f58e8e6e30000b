"""A learned stopping rule over the mixture's prefixes: P(the weighted
winner of the first k replies is right) by logistic regression fitted on
one set's prefixes (the package), then stop at the first k >= kmin whose
P reaches tau; evaluated on another set (held-out)."""
import math, sys
from collections import defaultdict

from variants import mixtures, wt

def state(kept):
    tot = defaultdict(float); cnt = defaultdict(int); by = defaultdict(set)
    for s in kept:
        if s['answer'] is None: continue
        tot[s['answer']] += wt(s); cnt[s['answer']] += 1; by[s['strategy']].add(s['answer'])
    k = len(kept)
    if not tot:
        return None, [0, 0, 0, 0, 0, 0, math.log(k), 1.0]
    top = max(tot.values())
    cands = [s for s in kept if s['answer'] is not None and abs(tot[s['answer']] - top) <= 1e-9 * max(top, 1)]
    w = max(cands, key=wt)
    a = w['answer']
    counts = sorted(cnt.values(), reverse=True) + [0]
    answered = sum(cnt.values())
    strategies = [st for st in by]
    if len(strategies) >= 2:
        cross = 1.0 if all(a in by[st] for st in strategies) else -1.0
    else:
        cross = 0.0
    sup = [wt(s) for s in kept if s['answer'] == a]
    f = [cnt[a] / answered, tot[a] / sum(tot.values()), (counts[0] - counts[1]) / k,
         1.0 if len(cnt) == 1 else 0.0, cross, sum(sup) / len(sup) - 5.0, math.log(k),
         1 - answered / k]
    return w['correct'] is True, f

def fit(X, y, l2=1.0, iters=3000, lr=0.1):
    d = len(X[0]) + 1
    w = [0.0] * d
    n = len(X)
    for _ in range(iters):
        g = [0.0] * d
        for x, t in zip(X, y):
            z = w[0] + sum(wi * xi for wi, xi in zip(w[1:], x))
            p = 1 / (1 + math.exp(-max(-30, min(30, z))))
            e = p - t
            g[0] += e
            for j, xi in enumerate(x): g[j + 1] += e * xi
        for j in range(d):
            w[j] -= lr * (g[j] / n + (l2 * w[j] / n if j else 0))
    return w

def prob(w, x):
    z = w[0] + sum(wi * xi for wi, xi in zip(w[1:], x))
    return 1 / (1 + math.exp(-max(-30, min(30, z))))

def replay(ms, w, tau, kmin):
    right = tokens = 0
    for m in ms:
        for k in range(1, len(m) + 1):
            r, f = state(m[:k])
            if k == len(m) or (k >= kmin and r is not None and prob(w, f) >= tau):
                break
        right += bool(r); tokens += sum(s['tokens'] for s in m[:k])
    return right, tokens / len(ms)

dev = mixtures(sys.argv[1], sys.argv[2]); test = mixtures(sys.argv[3], sys.argv[4])
X, y = [], []
for m in dev:
    for k in range(1, len(m) + 1):
        r, f = state(m[:k])
        if r is None: continue
        X.append(f); y.append(1 if r else 0)
w = fit(X, y)
print('weights', [round(v, 2) for v in w])
for kmin in (1, 2):
    print('kmin', kmin)
    for tau in (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95):
        print(f'  tau {tau}: dev {replay(dev, w, tau, kmin)}  test {replay(test, w, tau, kmin)}')
