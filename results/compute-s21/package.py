#!/usr/bin/env python3
"""The package's GSM8K problems: runs side by side on the items all of them hold.

usage: package.py NAME=RUN_DIR ...

Per run: right answering all (the answer found, given or withheld), answered
(coverage) and answered right, tokens generated and seconds per problem.
"""
import json, sys


def rows(d):
    return {r["id"]: r for r in map(json.loads, open(f"{d}/results.jsonl")) if r.get("reference") is not None}


def main():
    runs = [(a.split("=", 1)[0], rows(a.split("=", 1)[1])) for a in sys.argv[1:]]
    common = sorted(set.intersection(*(set(r) for _, r in runs)))
    n = len(common)
    print(f"{n} problems held by every run\n")
    print("| run | right, answering all | answered (coverage) | answered right | tokens / problem | s / problem |")
    print("|---|---|---|---|---|---|")
    for name, r in runs:
        xs = [r[i] for i in common]
        found = sum(bool(x["candidate_correct"]) for x in xs)
        answered = [x for x in xs if x["decision"] == "answer"]
        right = sum(bool(x["correct"]) for x in answered)
        tok = sum(x["generated_tokens"] for x in xs) / n
        sec = sum(x["seconds"] for x in xs) / n
        print(f"| {name} | {found}/{n} | {len(answered)} ({len(answered)/n:.2f}) | "
              f"{right}/{len(answered)} ({right/max(1,len(answered)):.3f}) | {tok:.0f} | {sec:.1f} |")
    if len(runs) >= 2:
        (a, ra), (b, rb) = runs[-1], runs[-2]
        only_a = [i for i in common if ra[i]["candidate_correct"] and not rb[i]["candidate_correct"]]
        only_b = [i for i in common if rb[i]["candidate_correct"] and not ra[i]["candidate_correct"]]
        print(f"\nright only in {a}: {len(only_a)}; right only in {b}: {len(only_b)}")


if __name__ == "__main__":
    main()
