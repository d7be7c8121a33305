"""A real auth service for forward-auth tests (and a JWKS host for jwt tests): aiohttp in its own process.

    python authserver.py --port P [--jwks FILE]

- ``/allow``: 200 with ``X-User-Id: alice`` and ``X-Auth-Saw: <JSON of the X-Forwarded-* and other headers it
  received>``.
- ``/deny``: 401 with ``WWW-Authenticate: Basic realm="auth"``, ``X-Auth-Reason: nope`` and a text body.
- ``/redirect``: 302 to ``https://login.example/?next=...`` (the original URI).
- ``/slow``: answers after 30 s (for timeouts).
- ``/jwks``: the JSON document in FILE, re-read on every request (tests rotate keys by rewriting it).
- ``/stats``: how many requests each path got.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from aiohttp import web

COUNTS: dict[str, int] = {}


async def handle(request: web.Request) -> web.StreamResponse:
    path = request.path
    COUNTS[path] = COUNTS.get(path, 0) + 1
    if path == "/stats":
        return web.json_response(COUNTS)
    if path == "/allow":
        saw = {k.lower(): v for k, v in request.headers.items() if k.lower() != "host"}
        saw["method"] = request.method
        saw["body_len"] = len(await request.read())
        return web.Response(text="ok", headers={"X-User-Id": "alice", "X-Auth-Saw": json.dumps(saw)})
    if path == "/deny":
        return web.Response(status=401, text="denied by auth",
                            headers={"WWW-Authenticate": 'Basic realm="auth"', "X-Auth-Reason": "nope"})
    if path == "/redirect":
        uri = request.headers.get("X-Forwarded-Uri", "")
        return web.Response(status=302, headers={"Location": f"https://login.example/?next={uri}"})
    if path == "/slow":
        await asyncio.sleep(30)
        return web.Response(text="late")
    if path == "/jwks":
        return web.Response(body=Path(request.app["jwks"]).read_bytes(), content_type="application/json")
    return web.Response(status=404, text="no such auth path")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--jwks", default="")
    args = ap.parse_args()
    app = web.Application()
    app["jwks"] = args.jwks
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None, handle_signals=True)


if __name__ == "__main__":
    main()
