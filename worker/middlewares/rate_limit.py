"""``rate-limit``: a node-wide token bucket on the shared-memory plane, so N workers enforce one limit.

``rate`` tokens per ``period`` refill a bucket of ``burst`` (default: ``rate``); each request takes one. The
bucket is per ``key`` (``global``: the whole middleware, as the original; ``router``, ``client-ip`` or
``header:<Name>``; default ``client-ip``). The take is lock-free on the hot path (``Plane.taker``); compiled,
the middleware is a native class (``rate_limit.pxd``) and the key and the take are C calls.
Rejections are 429 JSON with ``Retry-After`` (whole seconds until a token is back, at least 1) and the IETF
``RateLimit-Policy``/``RateLimit`` fields (``_support/ratelimit_fields.py``).
"""

from __future__ import annotations

from time import monotonic
from typing import TYPE_CHECKING, Any

from ..chain import Middleware, Reply, error_reply
from ._support.limit_key import LimitKey
from ._support.plane_slot import slot_index
from ._support.ratelimit_fields import RateLimitFields

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..process import Worker

REJECTED = "Rate limit exceeded"


class RateLimit(Middleware):
    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        super().__init__(name, params, worker)
        assert worker is not None, "rate-limit lives on the worker's shared-memory plane"
        if worker.plane.taker is None:
            raise RuntimeError("rate-limit takes tokens on a worker's (writable) plane")
        self.taker = worker.plane.taker
        self.idx = slot_index(worker, "limiters", name)
        self.rate = params["rate"] / params["period"]
        self.burst = params["burst"]
        self.key = LimitKey(params["key"])
        self.fields = RateLimitFields(name, params["rate"], params["period"])

    def on_request(self, ex: Exchange) -> Reply | None:
        admitted, remaining, retry_after = self.taker.take(self.idx, self.key.of(ex), self.rate, self.burst,
                                                           monotonic())
        if admitted:
            return None
        return error_reply(429, REJECTED, self.fields.rejected(retry_after, remaining))
