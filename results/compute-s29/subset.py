"""Right answers (answering all) and generated tokens per problem of runs,
on the problems a reference run recorded (a run stopped early, say).

usage: python3 subset.py REFERENCE_RUN NAME=RUN ..."""
import json
import sys


def rows(d):
    return {r["id"]: r for r in map(json.loads, open(f"{d}/results.jsonl"))}


def main():
    ids = list(rows(sys.argv[1]))
    print(f"{len(ids)} problems of {sys.argv[1]}\n")
    print("| run | right, answering all | tokens / problem |")
    print("|---|---|---|")
    for arg in sys.argv[2:]:
        name, d = arg.split("=", 1)
        r = rows(d)
        missing = [i for i in ids if i not in r]
        if missing:
            sys.exit(f"{d} lacks {len(missing)} of the problems, e.g. {missing[0]}")
        right = sum(bool(r[i]["candidate_correct"]) for i in ids)
        tokens = sum(r[i]["generated_tokens"] for i in ids) / len(ids)
        print(f"| {name} | {right}/{len(ids)} | {tokens:.0f} |")


if __name__ == "__main__":
    main()
