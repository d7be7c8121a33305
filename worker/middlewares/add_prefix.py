"""``add-prefix``: put ``prefix`` in front of the request path (query kept), e.g. ``/users`` → ``/api/users``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..chain import Middleware
from ._support.paths import with_path

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..process import Worker


class AddPrefix(Middleware):
    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        super().__init__(name, params, worker)
        self.prefix = params["prefix"].rstrip("/").encode()

    def on_request(self, ex: Exchange) -> None:
        ex.target = with_path(ex.target, self.prefix + ex.target.partition(b"?")[0])
