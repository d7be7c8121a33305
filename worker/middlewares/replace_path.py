"""``replace-path``: forward every request to ``path`` (query kept); the original path goes upstream in
``X-Replaced-Path``, as Traefik's ReplacePath does."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..chain import Middleware, remove_headers
from ._support.paths import with_path

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..process import Worker


class ReplacePath(Middleware):
    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        super().__init__(name, params, worker)
        self.path = params["path"].encode()

    def on_request(self, ex: Exchange) -> None:
        remove_headers(ex.headers, {b"x-replaced-path"})
        ex.headers.append((b"X-Replaced-Path", ex.target.partition(b"?")[0]))
        ex.target = with_path(ex.target, self.path)
