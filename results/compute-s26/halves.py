"""Runs of the gsm8k-train test half split into the 40 problems earlier
sessions ran and the further ones: right answering all, answered and their
accuracy, accuracy of the most confident 75% (ranked by the run's
confidence), AUROC and ECE (10 equal-width bins) over the graded answers,
tokens and seconds per problem.

usage: python3 halves.py FIRST40_RUN NAME=RUN ...
(FIRST40_RUN: any run of the first 40, read only for its problem ids)"""
import json, os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "compute-s23"))
from first_reply import auroc, ece  # one definition of the metrics


def rows(d):
    return {r["id"]: r for r in map(json.loads, open(f"{d}/results.jsonl"))}


def top75(xs):
    g = sorted((x for x in xs if x.get("confidence") is not None), key=lambda x: -x["confidence"])
    k = max(1, round(0.75 * len(xs)))
    top = g[:k]
    return sum(bool(x["candidate_correct"]) for x in top) / len(top) if top else float("nan")


def line(name, xs):
    n = len(xs)
    ans = [x for x in xs if x["decision"] == "answer"]
    right = sum(bool(x["correct"]) for x in ans)
    g = [x for x in xs if x.get("confidence") is not None]
    p = [x["confidence"] for x in g]
    y = [bool(x["candidate_correct"]) for x in g]
    cal = f"{auroc(p, y):.3f} | {ece(p, y):.3f}" if len(set(y)) == 2 else "– | –"
    return (f"| {name} | {sum(bool(x['candidate_correct']) for x in xs)}/{n} | {len(ans)} ({len(ans)/n:.2f}) | "
            f"{right/max(1, len(ans)):.3f} | {top75(xs):.3f} | {cal} | "
            f"{sum(x['generated_tokens'] for x in xs)/n:.0f} | {sum(x['seconds'] for x in xs)/n:.1f} |")


def main():
    first = set(rows(sys.argv[1]))
    runs = [(a.split("=", 1)[0], rows(a.split("=", 1)[1])) for a in sys.argv[2:]]
    print("| run, problems | right, answering all | answered (coverage) | answered right | right among the 75% most confident | AUROC | ECE | tokens / problem | s / problem |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in runs:
        ids = sorted(r)
        for part, keep in (("first 40", lambda i: i in first), ("further", lambda i: i not in first), ("all", lambda i: True)):
            xs = [r[i] for i in ids if keep(i)]
            if xs:
                print(line(f"{name}, {part}", xs))


if __name__ == "__main__":
    main()
