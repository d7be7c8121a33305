"""``retry``: send a failed request again, to another backend when the service has one.

Retried: connection failures (the backend never got the request) for every method; for idempotent methods
also timeouts, connections lost before a response head, and responses whose status is in
``retry_on_statuses`` (default 502/503/504; such a response is dropped unread). At most ``max_retries``
retries, ``retry_interval_ms`` apart (doubling each time with ``backoff = "exponential"``), within the
service's retry budget (``retry_budget.py``).

Invariants: a response that has started reaching the client is never retried. A request body is replayed
from a buffer of at most ``replay_buffer_bytes``; a larger body makes the request non-retryable (kept as
``ex.replay``, a bytearray of the body exactly as it was sent upstream, chunk framing included; an HTTP/2 stream
keeps it raw, since each attempt frames it for its backend).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..chain import Middleware
from .retry_budget import RetryBudget

if TYPE_CHECKING:
    from ...shared.errors import UpstreamError
    from ..exchange import Exchange
    from ..process import Worker

IDEMPOTENT = frozenset((b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"))


class Retry(Middleware):
    """The retry path of an exchange (``ex.retry``). ``ai-fallback`` extends it: ``chooses`` (it picks the next
    backend itself, ``exchange.repick``), ``peek_statuses`` (responses whose body it reads before deciding,
    ``upstream/http1.py``) and the ``retry_*`` hooks, which see why the attempt failed."""

    chooses = False
    peek_statuses: frozenset[int] = frozenset()

    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        super().__init__(name, params, worker)
        self.max_retries = params["max_retries"]
        self.interval = params["retry_interval_ms"] / 1000
        self.exponential = params["backoff"] == "exponential"
        self.statuses = frozenset(params["retry_on_statuses"])
        self.replay_limit = params["replay_buffer_bytes"]
        percent = params.get("budget_percent")           # None: the gateway's own replays (failover, mirroring)
        self.budget = RetryBudget(percent, params["min_retry_concurrency"], worker.plane) \
            if percent is not None and worker is not None else None

    def on_request(self, ex: Exchange) -> None:
        ex.retry = self
        if ex.req_has_body:
            ex.replay = bytearray()

    def keep_from_now(self, ex: Exchange) -> None:
        """Own ``ex``'s retry path from a backend pick on: keep its body, what arrived before the pick included."""
        ex.retry = self
        if ex.req_has_body:
            ex.replay = bytearray()
            for data in ex.pending or ():
                self.keep(ex, data)

    def keep(self, ex: Exchange, data: bytes) -> None:
        """Remember request body bytes sent upstream, until there are too many to replay."""
        replay = ex.replay
        if replay is not None:
            if len(replay) + len(data) > self.replay_limit:
                ex.replay = None
            else:
                replay += data

    def again(self, ex: Exchange, reached: bool) -> bool:
        """Whether to retry now (counting the attempt); ``reached``: the backend may have seen the request."""
        if ex.attempts >= self.max_retries or (ex.req_has_body and ex.replay is None):
            return False
        if reached and ex.method not in IDEMPOTENT:
            return False
        if self.budget is not None and not self.budget.admit(ex):
            return False
        ex.attempts += 1
        return True

    def retry_status(self, ex: Exchange, status: int, fields: list[tuple[bytes, bytes]]) -> bool:
        """Whether to retry a response whose status is in ``statuses`` (dropped unread if so)."""
        return self.again(ex, True)

    def retry_error(self, ex: Exchange, error: UpstreamError, reached: bool) -> bool:
        """Whether to retry an attempt that failed before a response head."""
        return self.again(ex, reached)

    def delay(self, ex: Exchange) -> float:
        return self.interval * (2 ** (ex.attempts - 1) if self.exponential else 1)
