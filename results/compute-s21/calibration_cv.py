#!/usr/bin/env python3
"""Could refitting the calibrator rank the loop's final answers better?

usage: calibration_cv.py RUN_DIR...   (runs of `--config full` that kept memory.sqlite)

Reads every graded episode's calibration features (episodes.features ->
"calibration") and its escalation (episodes.trace -> "escalation") from each
run's memory, then fits Bayesian logistic regression (Gaussian prior of the
variance given, MAP by Newton's method) with 5-fold cross-validation whose
folds are split by problem, so repeated runs of one problem never sit on
both sides. Two feature sets:

  shipped   the calibrator's own 11 features (bias, agreement, cross_check,
            mean_logprob, mean_reward, min_reward, verifier fails/passes,
            logit prior, logit P(True), no_answer);
  +pool     those and the escalation's pool: the leader's share of the
            weighted votes, log(1 + replies drawn), whether escalation kept
            the first answer, and the first answer's calibrated logit split
            by that flag.

Prints the recorded confidence's AUROC/ECE and each refit's out-of-fold
AUROC/ECE. Pure Python (no numpy).
"""
import json, math, random, sqlite3, sys


def logit(p, e=1e-3):
    p = min(max(p, e), 1 - e)
    return math.log(p / (1 - p))


def load(path):
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    rows = []
    q = "select task, features, outcome, confidence, trace from episodes where outcome is not null"
    for task, f, outcome, conf, trace in con.execute(q):
        cal = (json.loads(f) or {}).get("calibration")
        if cal is None or conf is None:
            continue
        e = (json.loads(trace) or {}).get("escalation") or {}
        votes = (e.get("rounds") or [{}])[-1].get("votes", {}) if e else {}
        total = sum(votes.values()) or 1.0
        lead = max(votes.values()) / total if votes else 1.0
        drawn = e.get("drawn", 0) if e else 0
        same = 1.0 if e and e.get("first_answer") == e.get("answer") else 0.0
        first = logit(e["first_confidence"]) if e else logit(conf)
        shipped = [1.0, cal["agreement"], cal["cross_check"], cal["mean_logprob"],
                   cal["mean_reward"], cal["min_reward"], cal["verifier_fails"],
                   cal["verifier_passes"], logit(cal["prior"]), logit(cal["p_true"]),
                   cal["no_answer"]]
        pool = shipped + [lead, math.log1p(drawn), same, first * same, first * (1 - same)]
        rows.append(dict(task=task, y=bool(outcome), conf=conf, shipped=shipped, pool=pool,
                         escalated=drawn > 0))
    return rows


def sigmoid(z):
    return 1 / (1 + math.exp(-max(min(z, 30), -30)))


def solve(a, b):
    n = len(b)
    m = [row[:] + [v] for row, v in zip(a, b)]
    for i in range(n):
        piv = max(range(i, n), key=lambda r: abs(m[r][i]))
        m[i], m[piv] = m[piv], m[i]
        for r in range(n):
            if r != i and m[i][i] != 0:
                f = m[r][i] / m[i][i]
                for c in range(i, n + 1):
                    m[r][c] -= f * m[i][c]
    return [m[i][n] / m[i][i] for i in range(n)]


def fit(xs, ys, var):
    d = len(xs[0])
    w = [0.0] * d
    for _ in range(100):
        g = [-wi / var for wi in w]
        h = [[(1 / var if i == j else 0.0) for j in range(d)] for i in range(d)]
        for x, y in zip(xs, ys):
            p = sigmoid(sum(a * b for a, b in zip(w, x)))
            for i in range(d):
                g[i] += (y - p) * x[i]
                for j in range(d):
                    h[i][j] += p * (1 - p) * x[i] * x[j]
        step = solve(h, g)
        w = [a + b for a, b in zip(w, step)]
        if max(abs(s) for s in step) < 1e-8:
            break
    return w


def auroc(p, y):
    pos = [a for a, b in zip(p, y) if b]
    neg = [a for a, b in zip(p, y) if not b]
    if not pos or not neg:
        return float("nan")
    return sum((a > b) + 0.5 * (a == b) for a in pos for b in neg) / (len(pos) * len(neg))


def ece(p, y, bins=10):
    total = 0.0
    for k in range(bins):
        idx = [i for i, v in enumerate(p) if k / bins <= v < (k + 1) / bins or (k == bins - 1 and v >= 1)]
        if idx:
            total += abs(sum(p[i] for i in idx) - sum(y[i] for i in idx))
    return total / len(p)


def main():
    data = []
    for run in sys.argv[1:]:
        rows = load(f"{run}/memory.sqlite")
        print(f"{run}: {len(rows)} graded episodes, {sum(r['y'] for r in rows)} right, "
              f"{sum(r['escalated'] for r in rows)} escalated")
        data += rows
    ys = [r["y"] for r in data]
    tasks = sorted({r["task"] for r in data})
    random.Random(7).shuffle(tasks)
    fold_of = {t: k % 5 for k, t in enumerate(tasks)}
    print(f"\n{len(data)} episodes of {len(tasks)} problems, {sum(ys)} right\n")
    print("| confidence | prior variance | AUROC | ECE |")
    print("|---|---|---|---|")
    conf = [r["conf"] for r in data]
    print(f"| recorded (shipped calibrator, updated online) | – | {auroc(conf, ys):.3f} | {ece(conf, ys):.3f} |")
    for key in ["shipped", "pool"]:
        for var in [0.3, 1.0, 3.0]:
            p = [0.0] * len(data)
            for fold in range(5):
                train = [i for i, r in enumerate(data) if fold_of[r["task"]] != fold]
                w = fit([data[i][key] for i in train], [ys[i] for i in train], var)
                for i, r in enumerate(data):
                    if fold_of[r["task"]] == fold:
                        p[i] = sigmoid(sum(a * b for a, b in zip(w, r[key])))
            name = "refit, the calibrator's features" if key == "shipped" else "refit, + the escalation pool"
            print(f"| {name} (5-fold by problem) | {var} | {auroc(p, ys):.3f} | {ece(p, ys):.3f} |")


if __name__ == "__main__":
    main()
