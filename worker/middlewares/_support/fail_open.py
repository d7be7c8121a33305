"""Fail-open for a middleware whose shared store (Redis) may be down: ``rate-limit-redis``, ``token-meter``.

When the store is unreachable, errors or is too slow, the request goes on as if the store had said yes; the
plane counts it per middleware name (``a3s_gateway_rate_limit_redis_fail_open_total``), a warning is logged at
most once per ``WARN_EVERY`` seconds, and for ``RETRY_AFTER_FAILURE`` seconds after a failure requests skip the
store (no pile-up of doomed connects), so enforcement resumes by itself when the store is back.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ....shared import log as gwlog

if TYPE_CHECKING:
    from ...process import Worker

WARN_EVERY = 10.0
RETRY_AFTER_FAILURE = 1.0
log = gwlog.get("worker")


class FailOpen:
    __slots__ = ("count", "doing", "middleware", "skip_until", "url", "warned_at", "worker")

    def __init__(self, middleware: str, worker: Worker | None, url: str, doing: str) -> None:
        """``doing``: what requests get meanwhile, for the warning ("allowing requests")."""
        self.middleware = middleware
        self.worker = worker
        self.url = url
        self.doing = doing
        self.skip_until = 0.0
        self.warned_at = -WARN_EVERY
        self.count = 0                       # this worker's, for the warning; node-wide totals are on the plane

    def skipping(self) -> bool:
        """Whether the store is skipped right now (the request then counts as a fail-open)."""
        if time.monotonic() < self.skip_until:
            self.counted()
            return True
        return False

    def counted(self) -> None:
        self.count += 1
        worker = self.worker
        if worker is None or worker.plane is None:
            return
        idx = worker.slots.get("middlewares", {}).get(self.middleware)   # this generation's index (by name)
        if idx is not None:
            worker.plane.middleware_fail_open(idx)

    def failed(self, error: BaseException) -> None:
        now = time.monotonic()
        self.counted()
        self.skip_until = now + RETRY_AFTER_FAILURE
        if now - self.warned_at >= WARN_EVERY:
            self.warned_at = now
            log.warning("%s: Redis at %s unavailable (%s); %s (fail-open, %d so far in this worker)",
                        self.middleware, self.url, type(error).__name__, self.doing, self.count)
