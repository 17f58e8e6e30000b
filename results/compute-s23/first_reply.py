"""Offline look: a calibrator of the first reply alone (one greedy reply, nothing pooled).

Usage: python3 first_reply.py learn=RUN test=RUN ...  (the first run is fitted on)
"""
import sqlite3, json, math, os, sys
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')
# NAME=RUN_DIR arguments (runs of the whole loop that kept memory.sqlite beside
# results.jsonl); the first is the one fitted on (a learn-half run).
RUNS = dict(a.split('=', 1) for a in sys.argv[1:] if '=' in a)
def logit(p, eps=1e-3):
    p = min(max(p, eps), 1 - eps); return math.log(p / (1 - p))
def num(s):
    try: return float(str(s).replace(',', ''))
    except: return None
def same(a, b):
    x, y = num(a), num(b)
    return x is not None and y is not None and abs(x - y) <= 1e-6 * max(1, abs(y))
def vec(f):
    return [1.0, f['agreement'], f['cross_check'], max(f['mean_logprob'], -5.0), f['mean_reward'], f['min_reward'],
            min(f['verifier_fails'], 3.0), min(f['verifier_passes'], 3.0), logit(f['prior']), logit(f['p_true']), f['no_answer']]
def first_features(d):
    s = d['solve']; a = s['attempts'][s['final_attempt']]
    o = a['outcome']; cand = o['candidates'][o['chosen']] if o['candidates'] else None
    prior = next((x['p_success'] for x in d['assessment']['options'] if x['strategy'] == a['strategy']), 0.5)
    p_true = d['features']['p_true']
    if cand is None:
        return dict(agreement=o['agreement'], cross_check=0.0, mean_logprob=0.0, mean_reward=0.0, min_reward=1.0,
                    verifier_fails=0.0, verifier_passes=0.0, prior=prior, p_true=p_true, no_answer=1.0)
    rw = [st['reward'] for st in cand['steps']]
    fails = sum(f['confidence'] for f in a['findings'] if f['verdict'] == 'fail')
    passes = sum(f['confidence'] for f in a['findings'] if f['verdict'] == 'pass')
    return dict(agreement=o['agreement'], cross_check=0.0, mean_logprob=cand['mean_logprob'],
                mean_reward=sum(rw) / len(rw) if rw else 0.0, min_reward=min(rw + [1.0]),
                verifier_fails=fails, verifier_passes=passes, prior=prior, p_true=p_true,
                no_answer=0.0 if cand.get('answer') else 1.0)
def load(run):
    res = [json.loads(l) for l in open(f'{run}/results.jsonl')]
    c = sqlite3.connect(f'file:{run}/memory.sqlite?mode=ro', uri=True)
    eps = [(json.loads(t), o, conf, ans) for (t, o, conf, ans) in c.execute(
        "select trace,outcome,confidence,answer from episodes order by id")]
    out = []
    for r, (d, o, conf, ans) in zip(res, eps):
        assert (r.get('answer') == ans) or r['decision'] != 'answer' or True
        e = d.get('escalation') or {}
        fa = e.get('first_answer', d.get('candidate_answer'))
        out.append(dict(id=r['id'], ref=r['reference'], first=fa, first_right=same(fa, r['reference']),
                        final_right=bool(r['candidate_correct']), first_conf=e.get('first_confidence', conf),
                        conf=conf, drawn=e.get('drawn', 0), ff=first_features(d), fin=d['features'],
                        strategy=d['solve']['attempts'][0]['strategy']))
    return out
def sigmoid(z): return 1 / (1 + math.exp(-max(min(z, 40), -40)))
def solve(A, b):
    n = len(b); M = [row[:] + [b[i]] for i, row in enumerate(A)]
    for i in range(n):
        p = max(range(i, n), key=lambda r: abs(M[r][i])); M[i], M[p] = M[p], M[i]
        for r in range(n):
            if r != i:
                f = M[r][i] / M[i][i]
                for k in range(i, n + 1): M[r][k] -= f * M[i][k]
    return [M[i][n] / M[i][i] for i in range(n)]
def fit(X, y, mu, var):
    w = mu[:]; d = len(w)
    def obj(w):
        s = sum((wi - mi) ** 2 for wi, mi in zip(w, mu)) / (2 * var)
        for x, t in zip(X, y):
            z = sum(a * b for a, b in zip(w, x)); s += math.log(1 + math.exp(-z)) if t else math.log(1 + math.exp(z))
        return s
    for _ in range(50):
        g = [(wi - mi) / var for wi, mi in zip(w, mu)]
        H = [[(1 / var if i == j else 0.0) for j in range(d)] for i in range(d)]
        for x, t in zip(X, y):
            p = sigmoid(sum(a * b for a, b in zip(w, x)))
            for i in range(d):
                g[i] += (p - t) * x[i]
                for j in range(d): H[i][j] += p * (1 - p) * x[i] * x[j]
        step = solve(H, g); o0 = obj(w); a = 1.0
        while a > 1e-6:
            nw = [wi - a * si for wi, si in zip(w, step)]
            if obj(nw) <= o0: break
            a /= 2
        if max(abs(a * s) for s in step) < 1e-8: w = nw; break
        w = nw
    return w
def auroc(p, y):
    pos = [a for a, b in zip(p, y) if b]; neg = [a for a, b in zip(p, y) if not b]
    if not pos or not neg: return float('nan')
    return sum((a > b) + 0.5 * (a == b) for a in pos for b in neg) / (len(pos) * len(neg))
def ece(p, y, bins=10):
    t = 0
    for k in range(bins):
        idx = [i for i, v in enumerate(p) if k / bins <= v < (k + 1) / bins or (k == bins - 1 and v >= 1)]
        t += abs(sum(p[i] for i in idx) - sum(y[i] for i in idx))
    return t / len(p)
def nll(p, y): return -sum(math.log(max(1e-6, q if t else 1 - q)) for q, t in zip(p, y)) / len(p)
def row(name, p, y): return f'{name:55s} AUROC {auroc(p,y):.3f} ECE {ece(p,y):.3f} logloss {nll(p,y):.3f} mean {sum(p)/len(p):.3f} acc {sum(y)/len(y):.3f}'
if __name__ == '__main__':
    data = {k: load(v) for k, v in RUNS.items()}
    earlier = json.load(open(os.path.join(ROOT, 'crates/reflection/calibration-short-answers.json')))['model']['mean']
    refit = json.load(open(os.path.join(ROOT, 'crates/reflection/calibration.json')))['model']['mean']
    for k, rows in data.items():
        print(k, len(rows), 'first right', sum(r['first_right'] for r in rows), 'final right', sum(r['final_right'] for r in rows),
              'strategies', {s: sum(r['strategy'] == s for r in rows) for s in set(r['strategy'] for r in rows)})
    learn = data[next(iter(data))]
    X = [vec(r['ff']) for r in learn]; y = [r['first_right'] for r in learn]
    # variance by 5-fold CV on learn
    best = None
    for var in [0.3, 1, 3, 10, 30]:
        ll = 0
        for k in range(5):
            tr = [i for i in range(len(X)) if i % 5 != k]; te = [i for i in range(len(X)) if i % 5 == k]
            w = fit([X[i] for i in tr], [y[i] for i in tr], earlier, var)
            ll += sum(-math.log(max(1e-6, sigmoid(sum(a*b for a,b in zip(w, X[i]))) if y[i] else 1 - sigmoid(sum(a*b for a,b in zip(w, X[i]))))) for i in te)
        print(f'var {var}: CV logloss {ll/len(X):.3f}')
        if best is None or ll < best[0]: best = (ll, var)
    w = fit(X, y, earlier, best[1])
    print('first-reply weights (var %s):' % best[1], [round(v, 2) for v in w])
    for k, rows in data.items():
        yy = [r['first_right'] for r in rows]; F = [vec(r['ff']) for r in rows]
        print(f'--- {k}: first answers')
        print(row('recorded first confidence', [r['first_conf'] for r in rows], yy))
        print(row('earlier model on first features', [sigmoid(sum(a*b for a,b in zip(earlier, x))) for x in F], yy))
        print(row('shipped refit on first features', [sigmoid(sum(a*b for a,b in zip(refit, x))) for x in F], yy))
        print(row('first-reply fit (learn100)', [sigmoid(sum(a*b for a,b in zip(w, x))) for x in F], yy))
        for s in set(r['strategy'] for r in rows):
            sub = [i for i, r in enumerate(rows) if r['strategy'] == s]
            print(row(f'   first-reply fit, {s} first ({len(sub)})', [sigmoid(sum(a*b for a,b in zip(w, F[i]))) for i in sub], [yy[i] for i in sub]))
    
