#!/usr/bin/env python3
"""P(answerable) of two answerability models on the same probed items.

usage: score.py MODEL_A.json MODEL_B.json RUN_DIR...

Each RUN_DIR is a `bench ... --config assess` run whose results.jsonl
records every item's answerability features. A model with fewer features
than recorded reads the first ones (the features were only ever appended).
Prints, per run and model, the AUROC of P(answerable) for answerable
against not, and the precision/recall/F1 of declining at P < t for the
thresholds given by METAREASON_THRESHOLDS (default 0.5 0.54).
"""
import json, math, os, sys


def load(path):
    m = json.load(open(path))
    mean = m["model"]["mean"]
    cov = m["model"]["cov"]
    # Without a probe of its own the loop reads the state feature as 0,
    # whatever a run recorded with another model's probe.
    unread = set() if m.get("state_probe") else {"state_logit_decline"}
    return m["features"], mean, cov, unread


def p_answerable(model, x):
    feats, mean, cov, unread = model
    d = len(mean)
    x = x[:d] + [0.0] * (d - len(x))
    x = [0.0 if f in unread else v for f, v in zip(feats, x)]
    mu = sum(a * b for a, b in zip(mean, x))
    s2 = sum(x[i] * cov[i * d + j] * x[j] for i in range(d) for j in range(d))
    z = mu / math.sqrt(1 + math.pi * s2 / 8)
    return 1 / (1 + math.exp(-z))


def auroc(pos, neg):
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def prf(pred, truth):
    tp = sum(p and t for p, t in zip(pred, truth))
    fp = sum(p and not t for p, t in zip(pred, truth))
    fn = sum(t and not p for p, t in zip(pred, truth))
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return prec, rec, f1


def main():
    a, b, runs = sys.argv[1], sys.argv[2], sys.argv[3:]
    models = [(os.path.basename(a), load(a)), (os.path.basename(b), load(b))]
    thresholds = [float(t) for t in os.environ.get("METAREASON_THRESHOLDS", "0.5 0.54").split()]
    print("| run | model | items | should decline | AUROC of P(answerable) | "
          + " | ".join(f"P/R/F1 declining at P < {t} | answerable declined at {t}" for t in thresholds) + " |")
    print("|---|---|---|---|---|" + "---|---|" * len(thresholds))
    for run in runs:
        rows = [json.loads(l) for l in open(os.path.join(run, "results.jsonl")) if l.strip()]
        rows = [r for r in rows if r.get("answerability")]
        truth = [r["should_decline"] for r in rows]
        for name, m in models:
            ps = [p_answerable(m, r["answerability"]) for r in rows]
            pos = [p for p, t in zip(ps, truth) if not t]
            neg = [p for p, t in zip(ps, truth) if t]
            au = auroc(pos, neg)
            cells = []
            for t in thresholds:
                pred = [p < t for p in ps]
                pr, rc, f1 = prf(pred, truth)
                over = sum(p and not tr for p, tr in zip(pred, truth)) / max(1, len(pos))
                cells.append(f"{pr:.2f} / {rc:.2f} / **{f1:.2f}** | {over:.2f}")
            print(f"| {os.path.basename(os.path.dirname(run.rstrip('/')))} | {name} | {len(rows)} | {len(neg)} | "
                  f"{'–' if au is None else f'{au:.3f}'} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
