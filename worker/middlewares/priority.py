"""``priority``: classify requests (critical .. best-effort) and admit them to a service in priority order.

Classification (spec §11.6, first hit wins): the ``priority_header`` value if it parses (names
case-insensitively, ``besteffort``, or ``0``-``4``; ignored when ``trust_header = false``), the tier of the
user named by ``user_header`` in ``user_tiers``, the first ``high_priority_paths`` prefix (high), the first
``low_priority_paths`` prefix (low), ``default_priority``. The result is sent upstream in
``priority_header`` (the client's copy replaced).

Admission (``max_concurrency > 0``): at most that many requests of the service are in flight node-wide
(admitted by this middleware in any worker; counted on the shared-memory plane until the exchange ends, a
streamed response included). Past it, a request waits in a priority queue (critical first, FIFO within a
priority) for at most ``queue_timeout_ms`` (then 503). When ``max_queue`` requests already wait node-wide,
the least urgent waiter of this worker that is less urgent than the newcomer is shed (503 +
``Retry-After``) to make room; if there is none, the newcomer is shed. A waiter is admitted when a slot is
free and no more urgent request waits in any worker. Workers see each other's releases by polling the
plane every few milliseconds while they hold waiters (releases in the same worker wake the queue at once).
Admission is claim-then-verify (bump own count, re-sum, back off if over), so the cap holds across workers.
Queue depth (gauge) and sheds, queued and timed-out requests by priority are metrics.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import TYPE_CHECKING, Any

from ..chain import Middleware, Reply, error_reply, header_value

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..process import Worker

from ...shared.vocabulary import PRIORITIES

POLL = 0.005


def parse_priority(text: str) -> int | None:
    t = text.lower()
    if t in PRIORITIES:
        return PRIORITIES.index(t)
    if t == "besteffort":
        return 4
    if len(t) == 1 and "0" <= t <= "4":
        return int(t)
    return None


class _Queue:
    """This worker's waiters for one service."""

    def __init__(self) -> None:
        self.heap: list[tuple[int, int, asyncio.Future[bool]]] = []
        self.poller: asyncio.TimerHandle | None = None


class Priority(Middleware):
    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        super().__init__(name, params, worker)
        self.header = params["priority_header"].encode()
        self.header_l = self.header.lower()
        self.trust = params["trust_header"]
        self.default = parse_priority(params["default_priority"])
        self.user_header = params["user_header"].lower().encode()
        self.tiers = {u.encode(): parse_priority(p) for u, p in params["user_tiers"].items()}
        self.high = [p.encode() for p in params["high_priority_paths"]]
        self.low = [p.encode() for p in params["low_priority_paths"]]
        self.limit = params["max_concurrency"]
        self.max_queue = params["max_queue"]
        self.timeout = params["queue_timeout_ms"] / 1000.0
        self.queues: dict[int, _Queue] = {}
        self.seq = itertools.count()

    def classify(self, ex: Exchange) -> int:
        if self.trust:
            v = header_value(ex.headers, self.header_l)
            if v is not None:
                p = parse_priority(v.decode("latin-1"))
                if p is not None:
                    return p
        user = header_value(ex.headers, self.user_header)
        if user is not None and user in self.tiers:
            return self.tiers[user]  # type: ignore[return-value]
        path = ex.target.partition(b"?")[0]
        if any(path.startswith(p) for p in self.high):
            return 1
        if any(path.startswith(p) for p in self.low):
            return 3
        return self.default  # type: ignore[return-value]

    def on_request(self, ex: Exchange) -> Any:
        p = self.classify(ex)
        ex.headers = [h for h in ex.headers if h[0].lower() != self.header_l]
        ex.headers.append((self.header, PRIORITIES[p].encode()))
        if self.limit <= 0 or self.worker is None or ex.service is None:
            return None
        svc = ex.service.idx
        q = self.queues.get(svc)
        if (q is None or not q.heap) and self._claim(svc, p):
            self._admitted(ex, svc)
            return None
        return self._wait(ex, svc, p)

    # ------------------------------------------------------------ admission
    def _claim(self, svc: int, p: int) -> bool:
        plane = self.worker.plane
        g = plane.priority_gauges(svc)
        if g[0] >= self.limit or any(g[1 + u] for u in range(p)):
            return False            # full, or someone more urgent waits (in any worker)
        plane.priority_gauge(svc, 0, 1)
        if plane.priority_gauges(svc)[0] > self.limit:
            plane.priority_gauge(svc, 0, -1)    # raced another worker for the last slot: back off
            return False
        return True

    def _admitted(self, ex: Exchange, svc: int) -> None:
        if ex.counted:                # the client left while it waited: give the slot back at once
            self._release(svc)
            return
        ex.on_done = [*(ex.on_done or ()), lambda _ex: self._release(svc)]

    def _release(self, svc: int) -> None:
        self.worker.plane.priority_gauge(svc, 0, -1)
        self._pump(svc)

    def _drop(self, svc: int, entry: tuple[int, int, asyncio.Future[bool]]) -> None:
        q = self.queues[svc]
        q.heap.remove(entry)
        heapq.heapify(q.heap)
        self.worker.plane.priority_gauge(svc, 1 + entry[0], -1)
        if not entry[2].done():
            entry[2].set_result(False)

    def _trim(self, svc: int) -> None:
        """Node-wide queue over ``max_queue`` (a more urgent request queued in another worker): shed this
        worker's waiters of the least urgent priority waiting anywhere."""
        q = self.queues[svc]
        g = self.worker.plane.priority_gauges(svc)
        excess = sum(g[1:]) - self.max_queue
        while excess > 0 and q.heap:
            worst = max(p for p in range(len(PRIORITIES)) if g[1 + p]) if any(g[1:]) else -1
            victim = max(q.heap)
            if victim[0] != worst:
                break
            self._drop(svc, victim)
            g[1 + worst] -= 1
            excess -= 1

    def _pump(self, svc: int) -> None:
        q = self.queues.get(svc)
        if q is None:
            return
        self._trim(svc)
        while q.heap:
            p, _s, fut = q.heap[0]
            if fut.done():
                heapq.heappop(q.heap)
                continue
            # waiters of this worker count themselves in the gauges: look only at the others, more urgent
            if not self._claim_as_waiter(svc, p):
                break
            heapq.heappop(q.heap)
            self.worker.plane.priority_gauge(svc, 1 + p, -1)
            fut.set_result(True)
        if q.heap and q.poller is None:
            q.poller = asyncio.get_running_loop().call_later(POLL, self._poll, svc)

    def _claim_as_waiter(self, svc: int, p: int) -> bool:
        plane = self.worker.plane
        g = plane.priority_gauges(svc)
        if g[0] >= self.limit:
            return False
        if any(g[1 + u] for u in range(p)):
            return False
        plane.priority_gauge(svc, 0, 1)
        if plane.priority_gauges(svc)[0] > self.limit:
            plane.priority_gauge(svc, 0, -1)
            return False
        return True

    def _poll(self, svc: int) -> None:
        q = self.queues[svc]
        q.poller = None
        self._pump(svc)

    async def _wait(self, ex: Exchange, svc: int, p: int) -> Reply | None:
        plane = self.worker.plane
        q = self.queues.setdefault(svc, _Queue())
        waiting = sum(plane.priority_gauges(svc)[1:])
        if waiting >= self.max_queue:
            victim = max((e for e in q.heap if not e[2].done()), default=None)
            if victim is not None and victim[0] > p:
                self._drop(svc, victim)
            elif not any(g for g in plane.priority_gauges(svc)[2 + p:]):
                plane.ai_add("priority_shed_" + PRIORITIES[p])
                return self._shed(p)
            # else: a less urgent request waits in another worker; it sheds it (``_trim``) and we queue
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        entry = (p, next(self.seq), fut)
        heapq.heappush(q.heap, entry)
        plane.priority_gauge(svc, 1 + p, 1)
        plane.ai_add("priority_queued_" + PRIORITIES[p])
        self._pump(svc)
        try:
            admitted = await asyncio.wait_for(asyncio.shield(fut), self.timeout)
        except TimeoutError:
            if fut.done():
                admitted = fut.result()
            else:
                fut.cancel()
                q.heap.remove(entry)
                heapq.heapify(q.heap)
                plane.priority_gauge(svc, 1 + p, -1)
                plane.ai_add("priority_timeout_" + PRIORITIES[p])
                return error_reply(503, "Service busy: queue timeout", [(b"Retry-After", b"1")],
                                   priority=PRIORITIES[p])
        if not admitted:
            plane.ai_add("priority_shed_" + PRIORITIES[p])
            return self._shed(p)
        self._admitted(ex, svc)
        return None

    @staticmethod
    def _shed(p: int) -> Reply:
        return error_reply(503, "Service busy: request shed", [(b"Retry-After", b"1")], priority=PRIORITIES[p])
