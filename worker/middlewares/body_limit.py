"""``body-limit``: refuse request bodies larger than ``max_body_bytes`` with 413 JSON.

A ``Content-Length`` over the limit is refused before any backend is contacted (the body is read and
dropped, so the connection stays usable). A body without one (chunked, or HTTP/2 DATA) is counted as it streams
(``ex.req_limit``, enforced by the HTTP/1.1 and HTTP/2 protocols): once past the limit the upstream request is
aborted and the client gets 413 (``Connection: close`` over HTTP/1.1) if no response has started, else its
connection (its stream) is reset. Nothing is added to the forwarded request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..chain import Middleware, Reply, error_reply

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..process import Worker

TOO_LARGE = "Request body too large"


class BodyLimit(Middleware):
    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        super().__init__(name, params, worker)
        self.limit = params["max_body_bytes"]

    def on_request(self, ex: Exchange) -> Reply | None:
        for name, value in ex.headers:
            if name.lower() == b"content-length":
                if int(value) > self.limit:   # digits only: checked by the HTTP/1.1 and HTTP/2 sides
                    return error_reply(413, TOO_LARGE, max_bytes=self.limit)
                return None
        if ex.req_has_body:                   # chunked, or an HTTP/2 body without a declared length
            ex.req_limit = min(ex.req_limit or self.limit, self.limit)
        return None
