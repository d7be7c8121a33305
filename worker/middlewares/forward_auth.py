"""``forward-auth``: ask an external auth service about each request, with Traefik's ForwardAuth semantics.

The auth service gets a GET to ``forward_auth_url`` with the request's headers (all of them, or only
``forward_auth_request_headers``; never the body or body-framing headers) plus ``X-Forwarded-Method``,
``-Proto``, ``-Host``, ``-Uri`` and ``-For`` describing the original request (client copies replaced).
- 2xx: allowed. Each header in ``forward_auth_response_headers`` is removed from the request and, when the
  auth response has it, copied from there (so a client cannot supply it itself).
- anything else (redirects included; they are never followed): the auth response — status, headers, body —
  goes back to the client as it is.
- connection failure: 502; no answer within ``timeout``: 504.
Connections to the auth service are pooled per worker (one aiohttp session per middleware instance, opened on
first use) and the request is awaited without blocking the worker's other connections.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp
from multidict import CIMultiDict

from ..chain import Middleware, Reply, error_reply, remove_headers
from ..hop_headers import HOP_BY_HOP
from ._support.lazy_client import LazyClient

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..process import Worker

_NOT_SENT = frozenset((b"content-length", b"transfer-encoding", b"expect", b"host", b"x-forwarded-method",
                       b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-uri", b"x-forwarded-for"))
_NOT_RETURNED = HOP_BY_HOP | {b"content-length"}
POOL_SIZE = 256


class ForwardAuth(Middleware):
    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        super().__init__(name, params, worker)
        self.url = params["forward_auth_url"]
        selected = params["forward_auth_request_headers"]
        self.selected = None if selected is None else frozenset(h.lower().encode() for h in selected)
        self.copy_back = [h.lower() for h in params["forward_auth_response_headers"]]
        self.copy_back_lower = frozenset(h.encode() for h in self.copy_back)
        self.timeout = params["timeout"]
        self.session = LazyClient(self._open, aiohttp.ClientSession.close)

    def auth_headers(self, ex: Exchange) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in ex.headers:
            ln = name.lower()
            if ln not in _NOT_SENT and (self.selected is None or ln in self.selected):
                headers.add(name.decode("latin-1"), value.decode("latin-1"))
        headers["X-Forwarded-Method"] = ex.method.decode("latin-1")
        headers["X-Forwarded-Proto"] = ex.conn.scheme.decode()
        headers["X-Forwarded-Host"] = ex.host.decode("latin-1")
        headers["X-Forwarded-Uri"] = ex.target.decode("latin-1")
        headers["X-Forwarded-For"] = ex.xff.decode("latin-1")
        return headers

    def on_request(self, ex: Exchange) -> Any:
        return self.ask(ex)

    def _open(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=POOL_SIZE), auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"))

    async def ask(self, ex: Exchange) -> Reply | None:
        try:
            async with self.session.get().get(self.url, headers=self.auth_headers(ex), allow_redirects=False) as resp:
                status = resp.status
                if 200 <= status < 300:
                    remove_headers(ex.headers, self.copy_back_lower)
                    for name in self.copy_back:
                        ex.headers.extend((name.encode(), v.encode("latin-1")) for v in resp.headers.getall(name, ()))
                    return None
                body = await resp.read()
                headers = [(k, v) for k, v in resp.raw_headers if k.lower() not in _NOT_RETURNED]
                return Reply(status, body, headers)
        except TimeoutError:
            return error_reply(504, "Auth service timed out")
        except aiohttp.ClientError:
            return error_reply(502, "Auth service unavailable")

    def close(self) -> None:
        self.session.close()
