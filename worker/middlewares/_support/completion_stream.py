"""Between a chat completion and its server-sent-events form, so ``semantic-cache`` can store either and answer
both: ``assemble`` turns a complete ``stream: true`` answer into the ``chat.completion`` it stands for, and
``replay`` turns a stored completion into the SSE chunks a streaming client expects.

``assemble`` accepts only what it can reproduce exactly: ``data:`` events of ``chat.completion.chunk``s with
text ``content`` deltas, ending with ``data: [DONE]``; a stream with tool-call or function-call deltas, or
that was cut short, gives None (not stored). ``replay`` sends each choice's role and whole content in one
chunk, then its ``finish_reason``, then ``usage`` when the request asked for it
(``stream_options.include_usage``), then ``[DONE]``.
"""

from __future__ import annotations

from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"


def assemble(body: bytes) -> dict[str, Any] | None:
    """The chat completion a complete SSE answer carries, or None."""
    head: dict[str, Any] = {}
    choices: dict[int, dict[str, Any]] = {}
    usage = None
    done = False
    for line in body.split(b"\n"):
        line = line.rstrip(b"\r")
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            done = True
            break
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(chunk, dict):
            return None
        for k in ("id", "created", "model", "system_fingerprint"):
            if k in chunk and k not in head:
                head[k] = chunk[k]
        if isinstance(chunk.get("usage"), dict):
            usage = chunk["usage"]
        for c in chunk.get("choices") or ():
            delta = c.get("delta") if isinstance(c, dict) else None
            if not isinstance(delta, dict) or "tool_calls" in delta or "function_call" in delta:
                return None
            slot = choices.setdefault(int(c.get("index", 0)), {"role": "assistant", "parts": [],
                                                               "finish_reason": None})
            if isinstance(delta.get("role"), str):
                slot["role"] = delta["role"]
            if isinstance(delta.get("content"), str):
                slot["parts"].append(delta["content"])
            if c.get("finish_reason") is not None:
                slot["finish_reason"] = c["finish_reason"]
    if not done:
        return None
    doc: dict[str, Any] = {"id": head.get("id", ""), "object": "chat.completion",
                           "created": head.get("created", 0), "model": head.get("model", ""),
                           "choices": [{"index": i, "message": {"role": s["role"], "content": "".join(s["parts"])},
                                        "finish_reason": s["finish_reason"]} for i, s in sorted(choices.items())]}
    if "system_fingerprint" in head:
        doc["system_fingerprint"] = head["system_fingerprint"]
    if usage is not None:
        doc["usage"] = usage
    return doc


def replay(doc: dict[str, Any], include_usage: bool) -> bytes:
    """The SSE body of a streamed answer with the content of the chat completion ``doc``."""
    base = {"id": doc.get("id", ""), "object": "chat.completion.chunk", "created": doc.get("created", 0),
            "model": doc.get("model", "")}
    if "system_fingerprint" in doc:
        base["system_fingerprint"] = doc["system_fingerprint"]
    events = []
    for choice in doc.get("choices") or ():
        message = choice.get("message") or {}
        delta: dict[str, Any] = {"role": message.get("role", "assistant"), "content": message.get("content")}
        if message.get("tool_calls"):
            delta["tool_calls"] = [{"index": i, **tc} for i, tc in enumerate(message["tool_calls"])]
        index = choice.get("index", 0)
        events.append({**base, "choices": [{"index": index, "delta": delta, "finish_reason": None}]})
        events.append({**base, "choices": [{"index": index, "delta": {},
                                            "finish_reason": choice.get("finish_reason") or "stop"}]})
    if include_usage and isinstance(doc.get("usage"), dict):
        events.append({**base, "choices": [], "usage": doc["usage"]})
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + DONE
