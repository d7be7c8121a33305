"""``api-key``: the request must carry one of the configured keys, in a header or a query parameter.

Every configured key is compared with ``hmac.compare_digest`` (all of them, no early exit), so timing tells
nothing about which key nearly matched. The key is removed from the forwarded request (header and query
parameter) unless ``forward_key = true``, so backends never see credentials they do not need.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from ..chain import Middleware, Reply, error_reply, remove_headers
from ._support.paths import split_target

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..process import Worker

REJECTED = "Invalid or missing API key"


class ApiKey(Middleware):
    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        super().__init__(name, params, worker)
        self.header = params["header"].lower().encode()
        self.keys = tuple(k.encode() for k in params["keys"])
        self.query_param = params["query_param"].encode() if params["query_param"] else None
        self.forward_key = params["forward_key"]

    def valid(self, candidate: bytes) -> bool:
        ok = False
        for key in self.keys:
            ok |= hmac.compare_digest(candidate, key)
        return ok

    def on_request(self, ex: Exchange) -> Reply | None:
        candidate = None
        for name, value in ex.headers:
            if name.lower() == self.header:
                candidate = value
                break
        path, params = split_target(ex.target) if self.query_param else (ex.target, [])
        if candidate is None and self.query_param:
            for pair in params:
                key, _, value = pair.partition(b"=")
                if key == self.query_param:
                    candidate = unquote_to_bytes(value.replace(b"+", b" "))
                    break
        if candidate is None or not self.valid(candidate):
            return error_reply(401, REJECTED)
        if not self.forward_key:
            remove_headers(ex.headers, {self.header})
            if self.query_param:
                kept = [p for p in params if p.partition(b"=")[0] != self.query_param]
                ex.target = path + (b"?" + b"&".join(kept) if kept else b"")
        return None
