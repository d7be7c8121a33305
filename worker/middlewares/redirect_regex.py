"""``redirect-regex``: redirect when the full request URL (``scheme://host/path?query``) matches ``regex``.

The Location is ``replacement`` with Traefik-style ``$1``/``${name}`` group references filled in. Status as
``redirect-scheme`` (302/301 for GET and HEAD, 307/308 otherwise). Non-matching requests pass through.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ..chain import Middleware, Reply
from ._support.paths import redirect

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..process import Worker

_GROUP_REF = re.compile(r"\$(\d+|\{\w+\})")


def python_template(replacement: str) -> bytes:
    """Traefik/Go ``$1`` and ``${name}`` references as Python ``\\g<1>`` ones (backslashes made literal)."""
    text = replacement.replace("\\", "\\\\")
    return _GROUP_REF.sub(lambda m: "\\g<" + m.group(1).strip("{}") + ">", text).encode()


class RedirectRegex(Middleware):
    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        super().__init__(name, params, worker)
        self.pattern = re.compile(params["regex"].encode())
        self.template = python_template(params["replacement"])
        self.permanent = params["permanent"]

    def on_request(self, ex: Exchange) -> Reply | None:
        url = ex.conn.scheme + b"://" + ex.host + ex.target
        m = self.pattern.search(url)
        if m is None:
            return None
        return redirect(ex, m.expand(self.template), self.permanent)
