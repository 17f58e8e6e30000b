"""Extractive check of a context (issue 13 experiment): ask the model to copy
the sentence of the context that answers the question, then measure which
of the question's content words the copied sentence lacks.

usage: METAREASON_BIN=PATH python3 quote.py RESULTS.jsonl OUT.jsonl
(RESULTS.jsonl: any run of unsolvable-questions, for its ids; OUT.jsonl
keeps the question, context and quote, so it stays out of the repository)
"""
import json, os, re, subprocess, sys

BIN = os.environ.get("METAREASON_BIN", "metareason")
DATA = os.environ.get("UNSOLVABLE_DATA", "../shared/data/unsolvable-questions.jsonl")
SYSTEM = ("You answer questions about a text by copying from it. Reply with one "
          "sentence copied word for word from the text, the sentence that states "
          "the answer. If no sentence of the text states the answer, reply NONE.")

def items():
    out = {}
    for i, line in enumerate(open(DATA)):
        if not line.strip():
            continue
        v = json.loads(line)
        user = next(m["content"] for m in v["input"] if m["role"] == "user")
        q, _, c = user.partition("Context:")
        q = q.replace("Question:", "").strip()
        out[f"uq-{i}"] = (q, c.strip(), v["ideal"] == "Unsolveable")
    return out

def main():
    ids = [json.loads(l)["id"] for l in open(sys.argv[1])]
    done = set()
    try:
        done = {json.loads(l)["id"] for l in open(sys.argv[2])}
    except FileNotFoundError:
        pass
    data = items()
    with open(sys.argv[2], "a") as f:
        for id_ in ids:
            if id_ in done:
                continue
            q, c, unsolvable = data[id_]
            prompt = f"Text: {c}\n\nQuestion: {q}\n\nCopy the sentence of the text that answers the question, or reply NONE."
            r = subprocess.run([BIN, "--threads", "2", "generate", "--system", SYSTEM,
                                "--max-tokens", "120", "--stop", "\n", prompt],
                               capture_output=True, text=True, timeout=600)
            f.write(json.dumps({"id": id_, "question": q, "context": c,
                                "unsolvable": unsolvable, "quote": r.stdout.strip()}) + "\n")
            f.flush()

if __name__ == "__main__":
    main()
