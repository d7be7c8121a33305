"""A fake model / agent backend for the AI-extension e2e tests (aiohttp, its own process).

    python ai_backend.py --port P --name NAME [--health ready]

- ``/v1/chat/completions``: OpenAI-compatible. JSON body ``{"stream": bool}``; header ``X-Tokens`` (default
  30) is the ``usage.total_tokens`` reported; ``X-No-Usage: 1`` omits usage (content is 40 characters).
  The answer's ``model`` is the request's, its ``id`` ``c<n>`` for the n-th completion (JSON answers);
  ``X-Seen-Authorization`` / ``X-Seen-Api-Key`` echo the credentials.
  Streaming answers SSE ``data:`` chunks, then a usage chunk, then ``data: [DONE]``.
- ``/v1/embeddings``: ``{"input": str}`` -> a deterministic unit vector of DIM hashed character trigrams of
  the lowercased words, so texts sharing most words are close and unrelated ones far. ``/_set?embeddings=``
  ``fail`` answers 500, ``slow`` answers after 5 s, ``ok`` (the default) normally.
- ``/v1/messages``: Anthropic-style (JSON or SSE events ``message_start`` .. ``message_stop``), usage from
  ``X-Tokens`` as ``input_tokens`` / ``output_tokens``; echoes ``X-Seen-Api-Key`` / ``X-Seen-Version``.
- ``/_set?mode=<mode>[&retry_after=S][&delay=S]``: how both chat endpoints answer from now on: ``ok``
  (default), ``429`` (``Retry-After: S`` when given), ``500``, ``slow`` (sleep ``delay`` s before the head),
  ``context`` (400 ``context_length_exceeded``), ``bad`` (400, another error), ``cut`` (a stream that closes
  after its first chunk).
- ``/_last``: the last chat request's path, headers and JSON body.
- ``/health``: the health document ``{"status": <state>, "model": "fake-llm", "queue_depth": 0}``;
  ``/_set?health=<state>`` changes the state (``down`` makes /health answer nothing useful: 500 text).
- ``/slow/<s>``: sleep s seconds, then echo.
- ``/_seen``: how many requests (other than /_*, /health) arrived, the most in flight at once, and ``paths``:
  the count per path.
- anything else: echo ``{"name", "method", "path", "headers", "body"}`` (body as text).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math

from aiohttp import web

STATE = {"health": "ready", "seen": 0, "inflight": 0, "peak": 0, "embeddings": "ok", "mode": "ok",
         "retry_after": None, "delay": 0.0, "last": None}
PATHS: dict[str, int] = {}
DIM = 256


def embedding(text: str) -> list[float]:
    vec = [0.0] * DIM
    for word in text.lower().split():
        padded = f" {word} "
        for i in range(len(padded) - 2):
            h = hashlib.blake2b(padded[i:i + 3].encode(), digest_size=4).digest()
            vec[int.from_bytes(h, "big") % DIM] += 1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


async def embeddings(request: web.Request) -> web.Response:
    if STATE["embeddings"] == "fail":
        return web.Response(status=500, text="embedder down")
    if STATE["embeddings"] == "slow":
        await asyncio.sleep(5)
    req = await request.json()
    return web.json_response({"object": "list", "model": req.get("model"),
                              "data": [{"object": "embedding", "index": 0, "embedding": embedding(req["input"])}]})


async def handle(request: web.Request) -> web.StreamResponse:
    name = request.app["name"]
    path = request.path
    if path == "/_seen":
        return web.json_response({"seen": STATE["seen"], "peak": STATE["peak"], "paths": PATHS})
    if path == "/_set":
        STATE["health"] = request.query.get("health", STATE["health"])
        STATE["embeddings"] = request.query.get("embeddings", STATE["embeddings"])
        STATE["mode"] = request.query.get("mode", STATE["mode"])
        STATE["retry_after"] = request.query.get("retry_after")
        STATE["delay"] = float(request.query.get("delay", 0))
        return web.json_response({k: v for k, v in STATE.items() if k != "last"})
    if path == "/_last":
        return web.json_response(STATE["last"])
    if path == "/health":
        if STATE["health"] == "down":
            return web.Response(status=500, text="no")
        return web.json_response({"status": STATE["health"], "model": "fake-llm", "queue_depth": 0})
    STATE["seen"] += 1
    PATHS[path] = PATHS.get(path, 0) + 1
    if path == "/v1/embeddings":
        return await embeddings(request)
    STATE["inflight"] += 1
    STATE["peak"] = max(STATE["peak"], STATE["inflight"])
    try:
        return await _serve(request, name, path)
    finally:
        STATE["inflight"] -= 1


async def _scripted(request: web.Request, name: str, path: str, body: bytes) -> web.StreamResponse | None:
    """The answer ``/_set?mode=`` scripts, or None to answer normally."""
    STATE["last"] = {"path": path, "headers": {k.lower(): v for k, v in request.headers.items()},
                     "body": json.loads(body or b"{}")}
    mode = STATE["mode"]
    tag = {"X-Backend": name}
    if mode == "429":
        extra = {"Retry-After": STATE["retry_after"]} if STATE["retry_after"] else {}
        return web.json_response({"error": {"message": "Rate limit reached", "type": "rate_limit"}}, status=429,
                                 headers={**tag, **extra})
    if mode == "500":
        return web.json_response({"error": {"message": "boom", "type": "server_error"}}, status=500, headers=tag)
    if mode == "context":
        return web.json_response({"error": {"message": "This model's maximum context length is 8 tokens",
                                            "type": "invalid_request_error", "code": "context_length_exceeded"}},
                                 status=400, headers=tag)
    if mode == "bad":
        return web.json_response({"error": {"message": "unknown parameter 'foo'", "type": "invalid_request_error"}},
                                 status=400, headers=tag)
    if mode == "slow":
        await asyncio.sleep(STATE["delay"])
    if mode == "cut":
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", **tag})
        await resp.prepare(request)
        chunk = {"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "Hel"}}]}
        await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        request.transport.close()
        return resp
    return None


async def _messages(request: web.Request, name: str, body: bytes) -> web.StreamResponse:
    """An Anthropic-style /v1/messages answer."""
    tokens = int(request.headers.get("X-Tokens", "30"))
    usage = {"input_tokens": tokens // 3, "output_tokens": tokens - tokens // 3}
    req = json.loads(body or b"{}")
    seen = {"X-Backend": name, "X-Seen-Api-Key": request.headers.get("X-Api-Key", ""),
            "X-Seen-Version": request.headers.get("Anthropic-Version", "")}
    if req.get("stream"):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", **seen})
        await resp.prepare(request)
        events = [("message_start", {"type": "message_start", "message": {
                      "id": "msg_1", "type": "message", "role": "assistant", "model": req.get("model"),
                      "content": [], "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 1}}}),
                  ("content_block_start", {"type": "content_block_start", "index": 0,
                                           "content_block": {"type": "text", "text": ""}}),
                  ("ping", {"type": "ping"})]
        events += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                            "delta": {"type": "text_delta", "text": word}})
                   for word in ("Hello", " from", " Claude")]
        events += [("content_block_stop", {"type": "content_block_stop", "index": 0}),
                   ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                      "usage": {"output_tokens": usage["output_tokens"]}}),
                   ("message_stop", {"type": "message_stop"})]
        for event, data in events:
            await resp.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
            await asyncio.sleep(0.005)
        await resp.write_eof()
        return resp
    text = "Hello from Claude, system=" + str(req.get("system"))
    return web.json_response({"id": "msg_1", "type": "message", "role": "assistant", "model": req.get("model"),
                              "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                              "usage": usage}, headers=seen)


async def _serve(request: web.Request, name: str, path: str) -> web.StreamResponse:
    body = await request.read()
    if path in ("/v1/chat/completions", "/v1/messages"):
        scripted = await _scripted(request, name, path, body)
        if scripted is not None:
            return scripted
    if path == "/v1/messages":
        return await _messages(request, name, body)
    if path == "/v1/chat/completions":
        tokens = int(request.headers.get("X-Tokens", "30"))
        usage = None if request.headers.get("X-No-Usage") else {
            "prompt_tokens": tokens // 3, "completion_tokens": tokens - tokens // 3, "total_tokens": tokens}
        req = json.loads(body or b"{}")
        seen = {"X-Backend": name, "X-Seen-Authorization": request.headers.get("Authorization", ""),
                "X-Seen-Api-Key": request.headers.get("X-Api-Key", "")}
        if req.get("stream"):
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", **seen})
            await resp.prepare(request)
            for word in ("Hello", " there", ", friend", "!"):
                chunk = {"id": "c1", "object": "chat.completion.chunk",
                         "choices": [{"index": 0, "delta": {"content": word}}]}
                await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                await asyncio.sleep(0.01)
            if usage is not None:
                await resp.write(b"data: " + json.dumps({"id": "c1", "choices": [], "usage": usage}).encode()
                                 + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp
        doc = {"id": f"c{PATHS[path]}", "object": "chat.completion", "model": req.get("model"), "created": 0,
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "x" * 40}}]}
        if usage is not None:
            doc["usage"] = usage
        return web.json_response(doc, headers=seen)
    if path.startswith("/slow/"):
        await asyncio.sleep(float(path.split("/")[2]))
    return web.json_response({"name": name, "method": request.method, "path": path,
                              "headers": {k.lower(): v for k, v in request.headers.items()},
                              "body": body.decode("utf-8", "replace")}, headers={"X-Backend": name})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", default="ai")
    ap.add_argument("--health", default="ready")
    args = ap.parse_args()
    STATE["health"] = args.health
    app = web.Application()
    app["name"] = args.name
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
