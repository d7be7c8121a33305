"""A faithful fake of Consul's KV HTTP API, for the Consul provider's tests (Consul is not packaged for Debian).

    python consul_fake.py --port P --data FILE [--token T]

What it implements, as Consul does (https://developer.hashicorp.com/consul/api-docs/kv, .../features/blocking):
- ``GET /v1/kv/<key>`` (``?recurse`` for every key under the prefix): ``[{Key, Value (base64, null when empty),
  Flags, CreateIndex, ModifyIndex, LockIndex}]``, 404 when nothing matches; ``X-Consul-Index`` on both.
- blocking queries: ``?index=N&wait=<duration>`` holds the answer until the store's index passes N or the wait
  ends (then answers the unchanged data with the same index).
- ``PUT /v1/kv/<key>`` (body: the value) and ``DELETE /v1/kv/<key>[?recurse]``; each write bumps the index.
- ACL: with ``--token``, a request without that token (``X-Consul-Token``, ``Authorization: Bearer`` or
  ``?token=``) gets 403 "ACL not found".
- ``GET /fake/stats``: the KV reads answered — ``blocking``, ``lists`` (recursive, not blocking) and ``keys`` (one
  key each) — so a test can see one list per change, not one read per key.
The data is kept in ``--data`` (JSON), so a restarted fake has its keys, as a restarted Consul agent would.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
from pathlib import Path

from aiohttp import web


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        saved = json.loads(path.read_text()) if path.exists() else {"index": 1, "keys": {}}
        self.index: int = saved["index"]
        self.keys: dict[str, dict] = saved["keys"]
        self.changed = asyncio.Condition()
        self.reads = {"blocking": 0, "lists": 0, "keys": 0}

    async def write(self) -> None:
        self.index += 1
        self.path.write_text(json.dumps({"index": self.index, "keys": self.keys}))
        async with self.changed:
            self.changed.notify_all()


def wait_seconds(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", text or "")
    if not m:
        return 300.0
    return float(m[1]) * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[m[2]]


def make_app(store: Store, token: str | None) -> web.Application:
    @web.middleware
    async def acl(request: web.Request, handler):  # type: ignore[no-untyped-def]
        if token is not None and request.path.startswith("/v1/"):
            given = (request.headers.get("X-Consul-Token") or request.query.get("token")
                     or request.headers.get("Authorization", "").removeprefix("Bearer "))
            if given != token:
                return web.Response(status=403, text="ACL not found")
        return await handler(request)

    def matching(key: str, recurse: bool) -> list[dict]:
        names = sorted(k for k in store.keys if (k.startswith(key) if recurse else k == key))
        return [store.keys[k] for k in names]

    async def get(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        recurse = "recurse" in request.query
        index = int(request.query.get("index", "0") or 0)
        if index and index >= store.index:
            try:
                async with store.changed:
                    await asyncio.wait_for(store.changed.wait_for(lambda: store.index > index),
                                           wait_seconds(request.query.get("wait", "")))
            except TimeoutError:
                pass
        store.reads["blocking" if index else "lists" if recurse else "keys"] += 1
        entries = matching(key, recurse)
        headers = {"X-Consul-Index": str(store.index), "X-Consul-Knownleader": "true"}
        if not entries:
            return web.Response(status=404, headers=headers)
        return web.json_response(entries, headers=headers)

    async def put(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        body = await request.read()
        old = store.keys.get(key)
        store.keys[key] = {"Key": key, "Value": base64.b64encode(body).decode() if body else None, "Flags": 0,
                           "CreateIndex": old["CreateIndex"] if old else store.index + 1,
                           "ModifyIndex": store.index + 1, "LockIndex": 0}
        await store.write()
        return web.json_response(True)

    async def delete(request: web.Request) -> web.Response:
        for entry in matching(request.match_info["key"], "recurse" in request.query):
            del store.keys[entry["Key"]]
        await store.write()
        return web.json_response(True)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({**store.reads, "index": store.index})

    app = web.Application(middlewares=[acl])
    app.router.add_get("/v1/kv/{key:.*}", get)
    app.router.add_put("/v1/kv/{key:.*}", put)
    app.router.add_delete("/v1/kv/{key:.*}", delete)
    app.router.add_get("/fake/stats", stats)
    return app


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--token")
    args = ap.parse_args()

    async def run() -> None:
        store = Store(Path(args.data))
        runner = web.AppRunner(make_app(store, args.token), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", args.port).start()
        await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    main()
