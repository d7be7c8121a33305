"""``cors``: answers CORS preflights and decorates responses to cross-origin requests.

A preflight is ``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``: answered here with 204 and
the allow headers, or 403 JSON for an origin that is not allowed; it never reaches the backend. Any other
request passes; if its ``Origin`` is allowed, the response gets ``Access-Control-Allow-Origin`` (``*`` when
every origin is allowed and credentials are off, else the request's origin with ``Vary: Origin``),
``Access-Control-Allow-Credentials`` and ``Access-Control-Expose-Headers`` as configured. Origins compare
exactly (scheme, host and port, case-sensitive), as browsers send them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..chain import Middleware, Reply, error_reply, header_value, remove_headers

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..process import Worker

_ACAO = b"access-control-allow-origin"


class Cors(Middleware):
    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        super().__init__(name, params, worker)
        origins = params["allowed_origins"]
        self.any_origin = "*" in origins
        self.origins = frozenset(o.encode() for o in origins)
        self.credentials = params["allow_credentials"]
        self.preflight_headers = [
            (b"Access-Control-Allow-Methods", ", ".join(params["allowed_methods"]).encode()),
            (b"Access-Control-Allow-Headers", ", ".join(params["allowed_headers"]).encode()),
            (b"Access-Control-Max-Age", str(params["max_age"]).encode()),
        ]
        self.common = [(b"Access-Control-Allow-Credentials", b"true")] if self.credentials else []
        self.expose = [(b"Access-Control-Expose-Headers", ", ".join(params["expose_headers"]).encode())] if (
            params["expose_headers"]) else []

    def allow_origin(self, origin: bytes) -> list[tuple[bytes, bytes]] | None:
        """The origin headers for an allowed ``origin``; None when it is not allowed."""
        if self.any_origin and not self.credentials:
            return [(b"Access-Control-Allow-Origin", b"*")]
        if self.any_origin or origin in self.origins:
            return [(b"Access-Control-Allow-Origin", origin), (b"Vary", b"Origin")]
        return None

    def on_request(self, ex: Exchange) -> Reply | None:
        if ex.method != b"OPTIONS":
            return None
        origin = header_value(ex.headers, b"origin")
        if origin is None or header_value(ex.headers, b"access-control-request-method") is None:
            return None
        allowed = self.allow_origin(origin)
        if allowed is None:
            return error_reply(403, "Origin not allowed")
        return Reply(204, b"", [*allowed, *self.common, *self.preflight_headers])

    def on_response(self, ex: Exchange, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        origin = header_value(ex.headers, b"origin")
        if origin is None:
            return
        allowed = self.allow_origin(origin)
        if allowed is not None:
            remove_headers(headers, {_ACAO})
            headers.extend(allowed)
            headers.extend(self.common)
            headers.extend(self.expose)
