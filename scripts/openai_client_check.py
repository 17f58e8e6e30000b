#!/usr/bin/env python3
"""Checks `metareason serve` with the official `openai` Python client, as a
user would call it: models, a plain completion, a streamed one, an error.

Usage: openai_client_check.py BASE_URL [API_KEY]
Exits non-zero with the reason on the first failure; prints a JSON summary.
"""
import json
import sys
import time

import openai
from openai import OpenAI


def main() -> None:
    base = sys.argv[1]
    key = sys.argv[2] if len(sys.argv) > 2 else "unused"
    client = OpenAI(base_url=base, api_key=key, max_retries=0, timeout=300)
    summary = {"openai": openai.__version__}

    ids = [m.id for m in client.models.list().data]
    assert "metareason" in ids and "metareason-greedy" in ids, ids
    summary["models"] = len(ids)

    messages = [{"role": "user", "content": "What is 2 + 3?"}]
    r = client.chat.completions.create(model="metareason-greedy", messages=messages, max_tokens=24, seed=1)
    assert r.object == "chat.completion", r
    assert r.choices[0].message.role == "assistant"
    assert isinstance(r.choices[0].message.content, str)
    meta = r.model_extra["metareason"]
    assert meta["decision"] in ("answer", "abstain", "refuse"), meta
    assert isinstance(meta["episode_id"], int), meta
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    summary["plain"] = {"decision": meta["decision"], "content": r.choices[0].message.content,
                        "tokens": r.usage.total_tokens}

    started = time.monotonic()
    first_event = None
    events, content, finish, usage, info = [], [], None, None, None
    stream = client.chat.completions.create(model="metareason-greedy", messages=messages, max_tokens=24,
                                            stream=True, stream_options={"include_usage": True})
    for chunk in stream:
        extra = chunk.model_extra or {}
        if extra.get("metareason_event"):
            if first_event is None:
                first_event = time.monotonic() - started
            events.append(extra["metareason_event"]["event"])
        for c in chunk.choices:
            if c.delta.content:
                assert "decided" in events, "reply text before the decision event"
                content.append(c.delta.content)
            if c.finish_reason:
                finish = c.finish_reason
                info = extra.get("metareason")
        if chunk.usage is not None:
            usage = chunk.usage
    for e in ("queued", "started", "assessed", "decided", "stored"):
        assert e in events, (e, events)
    assert finish == "stop", finish
    assert info and info["decision"] in ("answer", "abstain", "refuse"), info
    assert usage is not None and usage.completion_tokens >= 0
    summary["stream"] = {"events": events, "content": "".join(content),
                         "first_event_seconds": round(first_event, 4),
                         "total_seconds": round(time.monotonic() - started, 3)}

    try:
        client.chat.completions.create(model="gpt-4o", messages=messages)
    except openai.BadRequestError as e:
        assert "unknown model" in str(e), e
        summary["bad_model"] = "BadRequestError"
    else:
        raise AssertionError("an unknown model was accepted")

    print(json.dumps(summary))


if __name__ == "__main__":
    main()
