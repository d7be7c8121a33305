"""A real backend for end-to-end tests: an aiohttp server run as its own process.

    python backend.py --port P [--name NAME]

Every path answers JSON describing what arrived (name, method, path, query, headers, body length and SHA-256),
except these:
- ``/delay/<s>``: sleep s seconds, then answer.
- ``/status/<code>``: answer with that status and a JSON body.
- ``/download/<n>``: stream n bytes with a Content-Length (64 KiB writes).
- ``/chunked/<n>``: stream n bytes chunked (no Content-Length).
- ``/upload``: read the body as a stream, answer its length and SHA-256.
- ``/hold``: keep the request open until the client goes away (counts in ``/stats``).
- ``/stats``: requests seen and requests in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib

from aiohttp import web

STATS = {"requests": 0, "inflight": 0}


def _headers(request: web.Request) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in request.headers.items():
        out.setdefault(k.lower(), []).append(v)
    return out


async def handle(request: web.Request) -> web.StreamResponse:
    if request.path == "/stats":
        return web.json_response(STATS)
    STATS["requests"] += 1
    STATS["inflight"] += 1
    try:
        return await _route(request)
    finally:
        STATS["inflight"] -= 1


async def _route(request: web.Request) -> web.StreamResponse:
    name = request.app["name"]
    parts = request.path.strip("/").split("/")
    head = parts[0]
    if head == "delay":
        await asyncio.sleep(float(parts[1]))
    elif head == "status":
        return web.json_response({"name": name, "status": int(parts[1])}, status=int(parts[1]))
    elif head in ("download", "chunked"):
        n = int(parts[1])
        resp = web.StreamResponse(headers={"X-Backend": name})
        if head == "download":
            resp.content_length = n
        else:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        block = b"x" * 65536
        while n > 0:
            await resp.write(block[: min(n, 65536)])
            n -= 65536
        await resp.write_eof()
        return resp
    elif head == "hold":
        await asyncio.sleep(3600)
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.content.iter_any():
        digest.update(chunk)
        size += len(chunk)
    return web.json_response(
        {
            "name": name,
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "raw_path": request.raw_path,
            "headers": _headers(request),
            "body_len": size,
            "body_sha256": digest.hexdigest(),
            "version": f"{request.version.major}.{request.version.minor}",
        },
        headers={"X-Backend": name},
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", default="backend")
    args = ap.parse_args()
    app = web.Application(client_max_size=1 << 40)
    app["name"] = args.name
    app.router.add_route("*", "/{tail:.*}", handle)
    # backlog: a burst of 1000 connections (test_mirroring) must not overflow the backend's accept
    # queue (aiohttp's default is 128): the gateway is under test, not this backend
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None, handle_signals=True,
                backlog=2048)


if __name__ == "__main__":
    main()
