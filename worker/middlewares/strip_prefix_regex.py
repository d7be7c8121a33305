"""``strip-prefix-regex``: remove the part of the path matched by the first regex that matches at its start.

As Traefik's StripPrefixRegex: patterns are tried in order with ``re.match`` (anchored at the path's start);
the matched text is removed, the rest gets a leading ``/`` when it has none, the query is kept, and the
removed text is sent upstream as ``X-Forwarded-Prefix``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ..chain import Middleware
from ._support.paths import set_forwarded_prefix, with_path

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..process import Worker


class StripPrefixRegex(Middleware):
    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        super().__init__(name, params, worker)
        self.patterns = tuple(re.compile(r.encode()) for r in params["regex"])

    def on_request(self, ex: Exchange) -> None:
        path = ex.target.partition(b"?")[0]
        for pattern in self.patterns:
            m = pattern.match(path)
            if m is not None and m.end() > 0:
                set_forwarded_prefix(ex, m.group(0))
                ex.target = with_path(ex.target, path[m.end():])
                return
