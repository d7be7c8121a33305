"""The built-in middlewares, one module per config ``type`` (``rate-limit`` → ``rate_limit.py`` → ``RateLimit``);
the helpers they share are in ``_support/``.

Which class implements a type is said once, in ``shared/config/middleware_types.py`` (``MIDDLEWARE_TYPES``), as a
``"module:Class"`` string. A class is constructed from already-validated params (the same registry checks them
at load), so construction cannot fail on user input.

``Builder`` is the one place a worker turns ``[middlewares.*]`` into instances. An instance whose name and
params are unchanged by a reload is reused, so its state (connection pools, JWKS cache) survives; a middleware
referenced by several routers is one instance. Kinds that keep per-router state key it by ``ex.route.name``
(``rate-limit-redis`` with ``key = "router"``).
"""

from __future__ import annotations

from functools import cache
from importlib import import_module
from typing import TYPE_CHECKING, Any

import orjson

from ...shared.config.middleware_types import MIDDLEWARE_TYPES
from ..chain import Middleware
from ._support.lazy_client import wait_closed

if TYPE_CHECKING:
    from ..process import Worker


@cache
def middleware_class(type_name: str) -> type[Middleware]:
    """The class implementing a config ``type``, imported when a config first uses it: a worker only pays for
    the middlewares its config uses (aiohttp, redis, PyJWT, cryptography… are heavy imports and slow every
    worker start otherwise)."""
    module, _, cls = MIDDLEWARE_TYPES[type_name].implementation.partition(":")
    return getattr(import_module(f"{__name__}.{module}"), cls)


def build(name: str, params: dict[str, Any], worker: Worker | None = None) -> Middleware:
    return middleware_class(params["type"])(name, params, worker)


class Builder:
    """Builds each generation's middlewares for one worker, reusing instances whose config did not change."""

    def __init__(self, worker: Worker | None = None) -> None:
        self.worker = worker
        self.live: dict[str, tuple[bytes, Middleware]] = {}

    def __call__(self, configs: dict[str, dict[str, Any]]) -> dict[str, Middleware]:
        live: dict[str, tuple[bytes, Middleware]] = {}
        for name, params in configs.items():
            fingerprint = orjson.dumps(params, option=orjson.OPT_SORT_KEYS)
            old = self.live.get(name)
            live[name] = old if old is not None and old[0] == fingerprint else (
                fingerprint, build(name, params, self.worker))
        for name, (_, m) in self.live.items():
            if live.get(name, (b"", None))[1] is not m:
                m.close()       # resources reopen lazily should a request of the old generation still use it
        self.live = live
        return {name: m for name, (_, m) in live.items()}

    async def close(self, timeout: float) -> None:
        """The worker is stopping: close every middleware's clients and wait (up to ``timeout``) until closed."""
        for _, m in self.live.values():
            m.close()
        self.live = {}
        await wait_closed(timeout)
