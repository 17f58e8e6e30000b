"""One calibrator for both states: the first reply alone and the pooled answer, told apart by a feature.

Usage: python3 two_states.py learn=RUN test=RUN ...  (the first run is fitted on)
"""
import json, math, os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from first_reply import *
data = {k: load(v) for k, v in RUNS.items()}
earlier = json.load(open(os.path.join(ROOT, 'crates/reflection/calibration-short-answers.json')))['model']['mean']
refit = json.load(open(os.path.join(ROOT, 'crates/reflection/calibration.json')))['model']['mean']
def rows_of(rows, extra):
    out = []
    for i, r in enumerate(rows):
        out.append((i, 'first', vec(r['ff']) + extra(1), r['first_right']))
        if r['drawn'] > 0:
            out.append((i, 'final', vec(r['fin']) + extra(1 + r['drawn']), r['final_right']))
    return out
EXTRAS = {
  'single': lambda n: [1.0 if n == 1 else 0.0],
  'log_n': lambda n: [math.log(n)],
  'both': lambda n: [1.0 if n == 1 else 0.0, math.log(n)],
}
def pr(w, x): return sigmoid(sum(a*b for a, b in zip(w, x)))
for name, extra in EXTRAS.items():
    k_extra = len(extra(1))
    mu = earlier + [0.0] * k_extra
    L = rows_of(data[next(iter(data))], extra)
    best = None
    for var in [1, 3, 10, 30]:
        ll = 0
        for k in range(5):
            tr = [r for r in L if r[0] % 5 != k]; te = [r for r in L if r[0] % 5 == k]
            w = fit([r[2] for r in tr], [r[3] for r in tr], mu, var)
            ll += sum(-math.log(max(1e-6, pr(w, r[2]) if r[3] else 1 - pr(w, r[2]))) for r in te)
        if best is None or ll < best[0]: best = (ll, var)
    w = fit([r[2] for r in L], [r[3] for r in L], mu, best[1])
    print(f'=== extra {name}: var {best[1]} CV logloss {best[0]/len(L):.3f}; weights', [round(v, 2) for v in w])
    for k, rows in data.items():
        R = rows_of(rows, extra)
        for state in ['first', 'final']:
            S = [r for r in R if r[1] == state]
            print(row(f'{k} {state} ({len(S)})', [pr(w, r[2]) for r in S], [r[3] for r in S]))
        # the answers the loop would give: final if drawn else first
        fin = []
        for i, r in enumerate(rows):
            if r['drawn'] > 0: fin.append((pr(w, vec(r['fin']) + extra(1 + r['drawn'])), r['final_right']))
            else: fin.append((pr(w, vec(r['ff']) + extra(1)), r['first_right']))
        print(row(f'{k} as answered', [a for a, b in fin], [b for a, b in fin]))
print('=== shipped refit (11 features), as answered')
for k, rows in data.items():
    fin = [(pr(refit, vec(r['fin'])), r['final_right']) for r in rows]
    print(row(f'{k} as answered', [a for a, b in fin], [b for a, b in fin]))
