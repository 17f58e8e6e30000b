"""How well the agreement of sampled short answers separates answerable
questions from those that should be declined, per run: the share of items
that drew samples (short-text questions), and the AUROC of the feature for
answerable questions among them. Usage: agreement.py RUN_DIR..."""
import json
import sys


def auroc(pos, neg):
    if not pos or not neg:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


for run in sys.argv[1:]:
    rows = [json.loads(l) for l in open(f"{run}/results.jsonl") if l.strip()]
    rows = [r for r in rows if r.get("answerability")]
    sampled = [r for r in rows if r["answerability"][10] != 0.0 or r["generated_tokens"] > 0]
    pos = [r["answerability"][10] for r in sampled if not r["should_decline"]]
    neg = [r["answerability"][10] for r in sampled if r["should_decline"]]
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")
    print(
        f"{run}: {len(rows)} items, {len(sampled)} sampled ({len(pos)} answerable, {len(neg)} to decline); "
        f"mean agreement feature answerable {mean(pos):+.2f}, to decline {mean(neg):+.2f}; AUROC {auroc(pos, neg):.3f}"
    )
