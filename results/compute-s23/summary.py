"""One run's whole-run figures: right answering all, answered and their accuracy,
tokens and seconds per item, AUROC and ECE (10 equal-width bins) of the
confidence over the graded answers.  Usage: python3 summary.py RUN_DIR"""
import json, sys
run = sys.argv[1]
rows = [json.loads(l) for l in open(f'{run}/results.jsonl')]
n = len(rows)
def auroc(p, y):
    pos = [a for a, b in zip(p, y) if b]; neg = [a for a, b in zip(p, y) if not b]
    return sum((a > b) + 0.5 * (a == b) for a in pos for b in neg) / (len(pos) * len(neg))
def ece(p, y, bins=10):
    t = 0
    for k in range(bins):
        idx = [i for i, v in enumerate(p) if k / bins <= v < (k + 1) / bins or (k == bins - 1 and v >= 1)]
        t += abs(sum(p[i] for i in idx) - sum(y[i] for i in idx))
    return t / len(p)
g = [r for r in rows if r.get('confidence') is not None]
p = [r['confidence'] for r in g]; y = [bool(r['candidate_correct']) for r in g]
ans = [r for r in rows if r['decision'] == 'answer']
print(f"n={n} right_all={sum(bool(r['candidate_correct']) for r in rows)} answered={len(ans)} answered_right={sum(bool(r['correct']) for r in ans)} "
      f"acc={sum(bool(r['correct']) for r in ans)/max(1,len(ans)):.3f} tokens={sum(r['generated_tokens'] for r in rows)/n:.0f} "
      f"s={sum(r['seconds'] for r in rows)/n:.1f} auroc={auroc(p,y):.3f} ece={ece(p,y):.3f} meanconf={sum(p)/len(p):.3f}")
