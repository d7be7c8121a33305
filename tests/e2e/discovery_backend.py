"""A backend for discovery and DNS tests: serves a service document and a health endpoint it re-reads from disk.

    python discovery_backend.py --host H --port P --name NAME [--doc FILE]

- ``/.well-known/a3s-service.json``: the contents of FILE (404 when it is missing) — re-read per request, so
  a test changes the document (e.g. bumps ``version``) by rewriting the file.
- ``/health``: 200, or 503 while FILE + ".down" exists.
- anything else: JSON ``{"name": NAME, "path": ...}``.
"""

from __future__ import annotations

import argparse
import os

from aiohttp import web


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--doc")
    args = ap.parse_args()

    async def handle(request: web.Request) -> web.Response:
        if request.path == "/.well-known/a3s-service.json":
            if not args.doc or not os.path.exists(args.doc):
                return web.json_response({"error": "no document"}, status=404)
            with open(args.doc, encoding="utf-8") as f:  # noqa: ASYNC230 — a tiny test file
                return web.Response(text=f.read(), content_type="application/json")
        if request.path == "/health":
            down = args.doc and os.path.exists(args.doc + ".down")
            return web.json_response({"ok": not down}, status=503 if down else 200)
        return web.json_response({"name": args.name, "path": request.path})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
