"""Scores quote.py's output: AUROC of each feature of the copied sentence
for "unsolvable", on the questions that RUN_RESULTS.jsonl also holds.

usage: python3 quote_score.py QUOTES.jsonl RUN_RESULTS.jsonl [list]
"""
import json, os, re, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "compute-s23"))
from first_reply import auroc  # one definition of the metric

STOP = set("""a an the of in on at to for from by with about as into over after before
during between through under above is are was were be been being do does did
have has had what which who whom whose when where why how that this these those
it its their his her they them he she we you i and or but not no if than then
there here can could would should will shall may might must one ones some any
much many most more other such type kind name called""".split())

def words(s):
    return re.findall(r"[a-z0-9]+", s.lower())

def stem(w):
    for suf in ("ing", "ed", "es", "s"):
        if len(w) > len(suf) + 3 and w.endswith(suf):
            return w[: -len(suf)]
    return w

def specific(q):
    """Numbers and capitalised words past the first: names and dates."""
    toks = re.findall(r"[A-Za-z0-9]+", q)
    return {t.lower() for i, t in enumerate(toks) if t.isdigit() or (i > 0 and t[0].isupper())}

def features(r):
    quote = r["quote"]
    none = 1.0 if "NONE" in quote.upper()[:10] or not quote.strip() else 0.0
    qw = {stem(w) for w in words(r["question"]) if w not in STOP}
    qs = {stem(w) for w in words(quote)}
    cs = {stem(w) for w in words(r["context"])}
    missing = [w for w in qw if w not in qs]
    spec = {stem(w) for w in specific(r["question"])}
    spec_missing = [w for w in spec if w not in qs]
    in_context = 1.0 if re.sub(r"\W+", " ", quote.lower()).strip()[:60] in re.sub(r"\W+", " ", r["context"].lower()) else 0.0
    ctx_missing = [w for w in qw if w not in cs]
    return {
        "none": none,
        "missing_share": (len(missing) / len(qw) if qw else 0.0) if not none else 1.0,
        "missing": float(len(missing)) if not none else 5.0,
        "spec_missing": float(len(spec_missing)) if not none else 3.0,
        "not_in_context": 1.0 - in_context if not none else 1.0,
        "ctx_missing_share": len(ctx_missing) / len(qw) if qw else 0.0,
    }

def main():
    quotes = {json.loads(l)["id"]: json.loads(l) for l in open(sys.argv[1])}
    assess = {json.loads(l)["id"]: json.loads(l) for l in open(sys.argv[2])}
    ids = [i for i in quotes if i in assess]
    labels = [quotes[i]["unsolvable"] for i in ids]
    print(f"n={len(ids)} unsolvable={sum(labels)}")
    feats = [features(quotes[i]) for i in ids]
    for k in feats[0]:
        print(f"{k:18s} AUROC {auroc([f[k] for f in feats], labels):.3f}  mean unsolv {sum(f[k] for f,l in zip(feats,labels) if l)/max(1,sum(labels)):.2f} solv {sum(f[k] for f,l in zip(feats,labels) if not l)/max(1,len(labels)-sum(labels)):.2f}")
    if len(sys.argv) > 3:
        for i, f, l in zip(ids, feats, labels):
            print(l, f["spec_missing"], f["missing"], quotes[i]["question"], "=>", quotes[i]["quote"][:150])

if __name__ == "__main__":
    main()
