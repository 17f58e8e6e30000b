#!/usr/bin/env python3
"""Load test of `metareason serve`: C concurrent clients, each sending R chat
completions one after another. Reports throughput, latency percentiles,
rejected (429) and lost requests (neither answered nor rejected) as JSON,
and appends every answered episode id to --episodes FILE as it arrives (so a
test can kill the server mid-load and check that each is stored).

Usage: loadtest.py BASE_URL [--clients 16] [--requests 2] [--model M]
                   [--max-tokens 16] [--episodes FILE] [--key KEY]
Standard library only.
"""
import argparse
import json
import threading
import time
import urllib.error
import urllib.request

QUESTIONS = [f"What is {a} + {b}?" for a in range(2, 12) for b in range(3, 9)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=2)
    ap.add_argument("--model", default="metareason-greedy")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--episodes")
    ap.add_argument("--key")
    ap.add_argument("--timeout", type=float, default=600)
    a = ap.parse_args()
    lock = threading.Lock()
    latencies, rejected, lost, errors = [], 0, 0, []
    episodes = open(a.episodes, "a") if a.episodes else None

    def client(i: int) -> None:
        nonlocal rejected, lost
        for j in range(a.requests):
            q = QUESTIONS[(i * a.requests + j) % len(QUESTIONS)]
            body = json.dumps({"model": a.model, "max_tokens": a.max_tokens, "seed": i,
                               "messages": [{"role": "user", "content": q}]}).encode()
            req = urllib.request.Request(a.base.rstrip("/") + "/chat/completions", data=body,
                                         headers={"content-type": "application/json"})
            if a.key:
                req.add_header("authorization", f"Bearer {a.key}")
            t0 = time.monotonic()
            try:
                with urllib.request.urlopen(req, timeout=a.timeout) as r:
                    v = json.load(r)
                dt = time.monotonic() - t0
                with lock:
                    latencies.append(dt)
                    if episodes and v["metareason"].get("episode_id") is not None:
                        episodes.write(f"{v['metareason']['episode_id']}\n")
                        episodes.flush()
            except urllib.error.HTTPError as e:
                with lock:
                    if e.code == 429:
                        rejected += 1
                    else:
                        lost += 1
                        errors.append(f"{e.code}: {e.read()[:200]!r}")
            except Exception as e:  # connection refused or reset, timeout
                with lock:
                    lost += 1
                    errors.append(repr(e)[:200])

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))], 3) if lat else None

    print(json.dumps({"clients": a.clients, "requests": a.clients * a.requests, "answered": len(lat),
                      "rejected": rejected, "lost": lost, "seconds": round(wall, 3),
                      "throughput_per_minute": round(60 * len(lat) / wall, 2) if wall > 0 else None,
                      "p50_seconds": pct(0.5), "p99_seconds": pct(0.99), "errors": errors[:5]}))


if __name__ == "__main__":
    main()
