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

STATE = {"health": "ready", "seen": 0, "inflight": 0, "peak": 0, "embeddings": "ok"}
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
        return web.json_response(STATE)
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


async def _serve(request: web.Request, name: str, path: str) -> web.StreamResponse:
    body = await request.read()
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
