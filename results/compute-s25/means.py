"""Mean confidence against accuracy of each state of graded answers (an `export-graded` file) under calibrator JSONs (the probit-moderated predictive of `Calibrator::confidence`).

Usage: python3 means.py graded.jsonl CALIBRATOR.json..."""
import json, math, sys
def logit(p):
    p=min(max(p,1e-6),1-1e-6); return math.log(p/(1-p))
def vec(f):
    return [1.0,f['agreement'],f['cross_check'],max(f['mean_logprob'],-5.0),f['mean_reward'],f['min_reward'],min(f['verifier_fails'],3.0),min(f['verifier_passes'],3.0),logit(f['prior']),logit(f['p_true']),f['no_answer'],f.get('single_reply',0.0)]
def conf(c,x):
    m=c['model']['mean']; n=len(m); cov=c['model']['cov']
    mu=sum(a*b for a,b in zip(m,x)); var=sum(x[i]*cov[i*n+j]*x[j] for i in range(n) for j in range(n))
    return 1/(1+math.exp(-mu/math.sqrt(1+math.pi*var/8)))
rows=[json.loads(l) for l in open(sys.argv[1])]
for path in sys.argv[2:]:
    c=json.load(open(path))
    for st in ['first','final']:
        x=[r for r in rows if r['state']==st]
        p=[conf(c,vec(r['features'])) for r in x]
        print(f"{path} {st}: n {len(x)} acc {sum(r['right'] for r in x)/len(x):.3f} mean conf {sum(p)/len(p):.3f} recorded {sum(r['recorded'] for r in x)/len(x):.3f}")
