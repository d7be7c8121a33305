"""The admin API, served by the master with aiohttp on its own listener (default 127.0.0.1:9090).

Endpoints (paths as in the original implementation):
- ``GET /api/gateway/health``: lifecycle state, uptime, generation, workers, last reload result and errors.
  Answers 200 while running or reloading, 503 otherwise, so it doubles as a readiness probe.
- ``GET /api/gateway/config``: the current config as JSON, every secret redacted.
- ``GET /api/gateway/metrics``: Prometheus exposition (text 0.0.4, or OpenMetrics when the Accept header
  asks for it), built from the shared-memory plane by ``metrics.py``.

With ``admin.token`` set (the config refuses a non-loopback address without one), every request needs
``Authorization: Bearer <token>`` (constant-time comparison; 401 otherwise).

It runs in the master so it sees the whole node (all workers, the shared-memory plane) and keeps answering
while workers restart.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from ..shared.errors import GatewayError
from . import metrics

if TYPE_CHECKING:
    from .gateway import Gateway


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data, option=orjson.OPT_INDENT_2), status=status,
                        content_type="application/json")


class AdminServer:
    def __init__(self, gateway: Gateway, host: str, port: int) -> None:
        self.gateway = gateway
        self.host = host
        self.port = port
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/api/gateway/health", self.health)
        app.router.add_get("/api/gateway/config", self.config)
        app.router.add_get("/api/gateway/metrics", self.metrics)
        self.runner = web.AppRunner(app, access_log=None)
        self._metrics = metrics.Metrics(gateway)

    @web.middleware
    async def _auth(self, request: web.Request, handler) -> web.StreamResponse:  # type: ignore[no-untyped-def]
        """With ``admin.token`` set (required off loopback), every endpoint needs ``Authorization: Bearer
        <token>``, compared in constant time. Read per request, so a reload that changes the token applies."""
        token = (self.gateway.config().data.get("admin") or {}).get("token")
        if token:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if not (scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())):
                return web.Response(body=b'{"error":"Unauthorized"}', status=401, content_type="application/json",
                                    headers={"WWW-Authenticate": 'Bearer realm="a3s-gateway admin"'})
        return await handler(request)

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as e:
            await self.runner.cleanup()
            raise GatewayError(f"cannot bind admin API on {self.host}:{self.port}: {e.strerror or e}") from e

    async def stop(self) -> None:
        await self.runner.cleanup()

    async def health(self, request: web.Request) -> web.Response:
        health = self.gateway.health()
        return _json(health, 200 if self.gateway.is_running() else 503)

    async def config(self, request: web.Request) -> web.Response:
        return _json(self.gateway.config().redacted())

    async def metrics(self, request: web.Request) -> web.Response:
        body, content_type = self._metrics.exposition(request.headers.get("Accept"))
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = content_type
        return resp
