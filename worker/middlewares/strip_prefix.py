"""``strip-prefix``: remove the first configured prefix that the path starts with.

Plain string prefixes tried in list order (as the original and Traefik do: ``/api`` also strips ``/apiv2``
to ``/v2``); the rest gets a leading ``/`` when it has none; the query is kept. The removed prefix is passed
upstream in ``X-Forwarded-Prefix`` (a client's copy is replaced) so backends can build external links.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..chain import Middleware
from ._support.paths import set_forwarded_prefix, with_path

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..process import Worker


class StripPrefix(Middleware):
    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        super().__init__(name, params, worker)
        self.prefixes = tuple(p.encode() for p in params["prefixes"])

    def on_request(self, ex: Exchange) -> None:
        path = ex.target.partition(b"?")[0]
        for prefix in self.prefixes:
            if path.startswith(prefix):
                set_forwarded_prefix(ex, prefix)
                ex.target = with_path(ex.target, path[len(prefix):])
                return
