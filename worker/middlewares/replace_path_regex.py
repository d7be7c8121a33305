"""``replace-path-regex``: when the request path matches ``regex``, replace it with ``replacement`` (Traefik's
ReplacePathRegex): ``$1``/``${name}`` group references are filled in, an empty result becomes ``/``, the query
is kept and the original path goes upstream in ``X-Replaced-Path``. A path that does not match passes as it is.

The Gateway API's ``URLRewrite`` ``ReplacePrefixMatch`` is this middleware with ``^<prefix>(/.*)?$`` (so ``/foo``
→ ``/xyz`` and ``/foo/`` → ``/xyz/``, which ``strip-prefix`` then ``add-prefix`` cannot tell apart).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ..chain import Middleware, remove_headers
from ._support.paths import with_path
from .redirect_regex import python_template

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..process import Worker


class ReplacePathRegex(Middleware):
    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        super().__init__(name, params, worker)
        self.pattern = re.compile(params["regex"].encode())
        self.template = python_template(params["replacement"])

    def on_request(self, ex: Exchange) -> None:
        path = ex.target.partition(b"?")[0]
        m = self.pattern.search(path)
        if m is None:
            return
        remove_headers(ex.headers, {b"x-replaced-path"})
        ex.headers.append((b"X-Replaced-Path", path))
        ex.target = with_path(ex.target, self.pattern.sub(lambda _m: _m.expand(self.template), path, count=1))
