"""The activator: admission to one revision of a served service (its load balancer carries an ``activator``
table, ``master/serving/revisions.py``), and the queue of requests waiting for one of its instances.

A request goes straight to a ready instance with room; otherwise it waits in this worker's queue for the
revision, and the node-wide count of waiters (the plane's ``activator`` table) is what the master's controller
sees: its first waiter wakes the autoscaler at once, and waiters count as demand. The master publishes an
instance in a new generation as soon as its readiness probe answers; the queue's pump, polling every ``POLL`` s
while it holds waiters, reads the worker's *current* runtime, so a waiter is sent on as soon as its worker runs
a generation with room.

Invariants:

* ``container_concurrency`` (> 0) holds node-wide: an instance is claimed by bumping this worker's in-flight
  count on the plane, then re-summing every worker's; over the limit, the claim is undone and the next instance
  tried (claim-then-verify, as the ``priority`` middleware admits), so N workers never put N x the limit on it.
* waiters are served first come, first served within a worker, and a new request queues behind this worker's
  waiters rather than overtake them.
* a waiter ends exactly once: sent to an instance (its wait observed in the queue-wait histogram, and the
  response gets ``X-A3S-Cold-Start``), refused with 503 + ``Retry-After`` + a JSON body naming the revision (queue
  full node-wide, ``queue_timeout`` passed, or the master says no instance can start and why), or dropped
  because its client left; each decrements the gauge.
"""

from __future__ import annotations

import math
from collections import deque
from time import monotonic
from typing import TYPE_CHECKING, Any

from .. import responses
from ..responses import Answer

if TYPE_CHECKING:
    from ...shared.plane import Plane
    from ..exchange import Downstream, Exchange
    from ..process import Worker
    from ..runtime import Backend, Service

POLL = 0.01
COLD_START = b"X-A3S-Cold-Start"


class Activator:
    """One revision's admission in one generation of one worker."""

    def __init__(self, service: Service, settings: dict[str, Any], plane: Plane) -> None:
        self.service = service
        self.name = service.name
        self.idx = service.idx
        self.backends = service.backends
        self.cc = settings["container_concurrency"]
        self.depth = settings["queue_depth"]
        self.timeout = settings["queue_timeout"]
        self.failing: str | None = settings.get("failing")    # the master: no instance can start, and why
        self.plane = plane
        self.next = 0

    def pick(self, headers: Any, now: float) -> tuple[Service, Backend | None, tuple[bytes, ...]]:
        """What the service's weighted split sees: this revision, always (a revision without room queues; its
        share never goes to a sibling), with a backend to try first."""
        return self.service, self.service.balancer.pick(), ()

    def admit(self, ex: Exchange, conn: Downstream, backend: Backend | None) -> None:
        """Send ``ex`` to an instance with room, or queue it."""
        queue = QUEUES.get(self.name)
        if backend is not None and (queue is None or not queue.waiters):
            backend.acquire()
            if self.cc and backend.inflight() > self.cc:
                backend.release()
                backend = self.take()
            if backend is not None:
                ex.backend = backend
                return conn.connect_upstream(ex)
        if self.failing is not None and not self.backends:
            return conn.answer(ex, self.cannot_start())
        if self.plane.queued(self.idx) >= self.depth:
            self.plane.queue_refused(self.idx, False)
            return conn.answer(ex, refusal(self.name, f"the queue of revision '{self.name}' is full "
                                           f"({self.depth} requests wait for an instance)", self.timeout))
        if queue is None:
            queue = QUEUES[self.name] = Queue(self.name, conn.worker)
        queue.add(ex, conn, self.idx)

    def cannot_start(self) -> Answer:
        return refusal(self.name, f"revision '{self.name}' cannot start an instance: {self.failing}", 1.0)

    def take(self) -> Backend | None:
        """A healthy instance with room, claimed (its in-flight count bumped), or None."""
        backends = self.backends
        n = len(backends)
        for k in range(n):
            b = backends[(self.next + k) % n]
            if not b.is_healthy():
                continue
            b.acquire()
            if self.cc and b.inflight() > self.cc:
                b.release()
                continue
            self.next = (self.next + k + 1) % n
            return b
        return None



def refusal(revision: str, message: str, retry_after: float) -> Answer:
    """503 with ``Retry-After`` (whole seconds, 1 to 10) and ``{"error": message, "revision": revision}``."""
    body = responses.error_body(503, message, revision=revision)
    return Answer(503, [(b"Content-Type", b"application/json"), (b"Content-Length", b"%d" % len(body)),
                        (b"Retry-After", b"%d" % max(1, math.ceil(min(retry_after, 10.0))))], body)


class Queue:
    """This worker's waiters for one revision, across generations (keyed by the revision's service name)."""

    def __init__(self, name: str, worker: Worker) -> None:
        self.name = name
        self.worker = worker
        self.waiters: deque[tuple[Exchange, Downstream, float, int]] = deque()
        self.timer: Any = None

    def add(self, ex: Exchange, conn: Downstream, idx: int) -> None:
        self.waiters.append((ex, conn, monotonic(), idx))
        conn.worker.plane.queue_change(idx, 1)
        if self.timer is None:
            self.timer = self.worker.loop.call_later(POLL, self.pump)
        if len(self.waiters) == 1:          # the first waiter: wake the autoscaler now (the master's poke)
            self.worker.channel.send({"op": "poke", "service": self.name})

    def pump(self) -> None:
        self.timer = None
        service = self.worker.runtime.services.get(self.name)
        activator = service.activator if service is not None else None
        plane = self.worker.plane
        now = monotonic()
        waiters = self.waiters
        while waiters:
            ex, conn, since, idx = waiters[0]
            if not conn.current(ex):                 # the client left
                waiters.popleft()
                plane.queue_change(idx, -1)
                continue
            if activator is not None and activator.failing is not None and not activator.backends:
                waiters.popleft()
                plane.queue_change(idx, -1)
                conn.answer(ex, activator.cannot_start())
                conn.flush()
                continue
            if activator is None or now - since >= activator.timeout:
                waiters.popleft()
                plane.queue_change(idx, -1)
                plane.queue_refused(idx, True)
                why = "was removed" if activator is None else f"had no instance ready within {activator.timeout:g}s"
                conn.answer(ex, refusal(self.name, f"revision '{self.name}' {why}",
                                        1.0 if activator is None else activator.timeout))
                conn.flush()
                continue
            backend = activator.take()
            if backend is None:
                break
            waiters.popleft()
            plane.queue_change(idx, -1)
            plane.queue_waited(idx, now - since)
            ex.service = activator.service
            ex.backend = backend
            ex.resp_fields = [(COLD_START, b"%dms" % round((now - since) * 1000))]
            conn.connect_upstream(ex)
            conn.flush()
        if waiters:
            self.timer = self.worker.loop.call_later(POLL, self.pump)
        else:
            QUEUES.pop(self.name, None)


QUEUES: dict[str, Queue] = {}
"""This worker's queues by revision service name (module state: one worker per process)."""
