"""One run's whole-run figures: right answering all, answered and their accuracy,
tokens and seconds per item, AUROC and ECE (10 equal-width bins) of the
confidence over the graded answers.  Usage: python3 summary.py RUN_DIR"""
import json, os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from first_reply import auroc, ece  # one definition of the metrics
run = sys.argv[1]
rows = [json.loads(l) for l in open(f'{run}/results.jsonl')]
n = len(rows)
g = [r for r in rows if r.get('confidence') is not None]
p = [r['confidence'] for r in g]; y = [bool(r['candidate_correct']) for r in g]
ans = [r for r in rows if r['decision'] == 'answer']
print(f"n={n} right_all={sum(bool(r['candidate_correct']) for r in rows)} answered={len(ans)} answered_right={sum(bool(r['correct']) for r in ans)} "
      f"acc={sum(bool(r['correct']) for r in ans)/max(1,len(ans)):.3f} tokens={sum(r['generated_tokens'] for r in rows)/n:.0f} "
      f"s={sum(r['seconds'] for r in rows)/n:.1f} auroc={auroc(p,y):.3f} ece={ece(p,y):.3f} meanconf={sum(p)/len(p):.3f}")
