"""``redirect-scheme``: redirect requests that arrived over another scheme to ``scheme`` (default https).

The Location keeps host, path and query; ``port`` replaces the port (left out when it is the scheme's
default). Status as Traefik: 302/301 (``permanent``) for GET and HEAD, 307/308 for other methods so the
method and body are kept. Requests already on the target scheme pass through.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..chain import Middleware, Reply
from ._support.paths import redirect

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..process import Worker

DEFAULT_PORTS = {b"http": 80, b"https": 443}


class RedirectScheme(Middleware):
    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        super().__init__(name, params, worker)
        self.scheme = params["scheme"].encode()
        port = params["port"]
        self.port = b"" if port is None or port == DEFAULT_PORTS[self.scheme] else b":%d" % port
        self.permanent = params["permanent"]

    def on_request(self, ex: Exchange) -> Reply | None:
        if ex.conn.scheme == self.scheme:
            return None
        host = ex.host
        if host[:1] == b"[":
            host = host[: host.find(b"]") + 1]
        else:
            host = host.partition(b":")[0]
        return redirect(ex, self.scheme + b"://" + host + self.port + ex.target, self.permanent)
