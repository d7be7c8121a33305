"""``Plane``: the typed API over the gateway's shared-memory state. No other module touches raw offsets.

Lifecycle:
    plane = Plane.create(layout)             master, before spawning workers (prefix a3s-gw.<pid>)
    plane.name                               prefix handed to workers (argv / env)
    plane = Plane.attach(name, worker_slot)  worker after exec; worker_slot=None: read-only (status tool)
    plane.close(); plane.unlink()            master unlinks on every exit path (an atexit hook too;
                                             a kill -9'd master's segments go at the next start through
                                             ``Plane.cleanup_stale()``)

Segments (``a3s-gw.<pid>.<segment>``, one module each, layout documented there): header, workers,
counters, health, breaker, ratelimit, sticky, names, observations (metrics histograms and counters), ai,
middlewares (replies and fail-opens by middleware), locks (zero bytes: its fd carries the fcntl locks).

Who writes what:
- a worker writes only its own slot's words (heartbeat, in-flight, counters, failure counts, rate-limit
  admissions), plus the single-word shared fields documented in health/ratelimit/sticky, plus multi-word
  records under an fcntl lock (breaker transitions, new sticky/rate-limit entries);
- the master writes the header, worker pids, active health, names, the ``retired`` row/columns (its own
  writes, e.g. passive failures seen by active checks, land there too) and resets of reallocated slots.
No lock or semaphore is taken on the hot path: ``heartbeat``, ``inflight_*``, ``least_connections``,
``record``, ``is_healthy``, ``passive_*``, ``ratelimit_take`` for a known key, ``breaker_allow`` when
closed or cooling down, ``breaker_record`` when no transition happens, ``sticky_get`` are loads and
aligned stores only.

A process must attach *after* it forks (fcntl locks and the breaker's trial owner are per process), and
should hold one ``Plane`` per plane: closing a second attachment's lock fd would drop the first's locks.
"""

from __future__ import annotations

import atexit
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from . import header as H
from .activator import FULL as _Q_FULL
from .activator import QUEUED as _Q_QUEUED
from .activator import TIMEOUT as _Q_TIMEOUT
from .activator import ActivatorTable
from .ai import AiTable
from .backend_ops import BackendOps, Clock, Words
from .breaker import BreakerTable
from .counters import (
    BYTES_IN,
    BYTES_OUT,
    COLS,
    CONNECTION_FAILURES,
    CONNECTION_MS,
    CONNECTIONS,
    CounterTable,
    status_col,
)
from .ejection import EjectionPolicy
from .errors import PlaneError
from .health import REASONS as _REASONS
from .health import HealthTable
from .layout import BUCKET, PlaneLayout
from .ledger import Ledger
from .locks import RangeLocks
from .middlewares import MiddlewareTable
from .names import NameTable
from .observations import ObservationTable
from .ratelimit import RateLimitTable, Taker
from .segments import (
    PREFIX,
    SHM_DIR,
    Segment,
    list_ours,
    pid_alive,
    prefix_pid,
    process_start_time,
    segment_name,
    unlink,
)
from .sticky import StickyTable
from .traffic import ACTIVATIONS as _ACTIVATIONS
from .traffic import EXHAUSTED as _EXHAUSTED
from .traffic import TrafficTable, outcome_word
from .workers import HEARTBEAT, ROW, WorkerTable

_TABLES = (WorkerTable, CounterTable, HealthTable, BreakerTable, RateLimitTable, StickyTable, NameTable,
           ObservationTable, AiTable, MiddlewareTable, TrafficTable, ActivatorTable)
SEGMENTS = ("header",) + tuple(t.SEGMENT for t in _TABLES) + ("locks",)
_LIVE: set[str] = set()  # prefixes created by this process and not yet unlinked

_WORKER_WRITES = ("heartbeat", "inflight_inc", "inflight_dec", "report_generation", "observe", "account", "add_misc",
                  "set_connections", "ai_add", "priority_gauge", "token_record", "middleware_answered",
                  "middleware_fail_open", "middleware_attempt", "retry_change", "queue_change", "queue_refused",
                  "queue_waited", "token_settle")
_LOCKING = ("breaker_allow", "breaker_record", "ratelimit_take", "sticky_bind", "reset_breaker", "mirror_select",
            "mirror_outcome", "retry_budget_exhausted", "failover_activated", "outlier_eject", "outlier_decay",
            "token_charge")
_ANY_WRITES = ("record", "outlier_failure", "outlier_restart", "passive_success", "sticky_unbind", "hold_down")
_MASTER_WRITES = ("set_agent_state", "set_healthy", "set_worker", "fold_worker", "reset_backend", "reset_router",
                  "reset_service", "reset_limiter", "reset_middleware", "set_name")


def segment_sizes(layout: PlaneLayout) -> dict[str, int]:
    sizes = {"header": H.SIZE, "locks": 0}
    for t in _TABLES:
        sizes[t.SEGMENT] = t.nbytes(layout)
    return sizes


def _make_prefix(tag: str | None) -> str:
    if tag is not None and (not tag.isalnum() or not tag.isascii()):
        raise PlaneError(f"plane tag must be ASCII letters and digits, got {tag!r}")
    return f"{PREFIX}.{os.getpid()}" + (f".{tag}" if tag else "")


def _unlink_prefix(prefix: str, creator_pid: int | None = None) -> list[str]:
    if creator_pid is not None and os.getpid() != creator_pid:
        return []
    gone = [segment_name(prefix, s) for s in SEGMENTS if unlink(segment_name(prefix, s))]
    _LIVE.discard(prefix)
    return gone


class Plane:
    def __init__(self, prefix: str, segs: dict[str, Segment], layout: PlaneLayout, slot: int | None,
                 writable: bool, creator: bool) -> None:
        self.name = prefix
        self.layout = layout
        self.worker_slot = slot
        self.creator = creator
        self._segs = segs
        self._hdr = segs["header"].view(0, H.SIZE, "q")
        self._rows_i = H.ROWS
        secret = self._hdr[H.SECRET0].to_bytes(8, "little", signed=True) + self._hdr[H.SECRET1].to_bytes(
            8, "little", signed=True
        )
        lk_fd = segs["locks"].fd
        self._locks = RangeLocks(lk_fd) if writable and lk_fd is not None else None
        nb = layout.max_breakers
        rl_base = nb
        st_base = rl_base + layout.ratelimit_entries // BUCKET
        self.workers = WorkerTable(segs["workers"], layout)
        self.counters = CounterTable(segs["counters"], layout)
        self.health = HealthTable(segs["health"], layout)
        self.breakers = BreakerTable(segs["breaker"], layout, self._locks, 0)
        self.ratelimits = RateLimitTable(segs["ratelimit"], layout, self._locks, rl_base, secret)
        self.sticky = StickyTable(segs["sticky"], layout, self._locks, st_base, secret)
        self.names = NameTable(segs["names"], layout)
        self.observations = ObservationTable(segs["observations"], layout)
        self.ai = AiTable(segs["ai"], layout, self._locks, st_base + layout.sticky_entries // BUCKET, secret)
        self.middlewares = MiddlewareTable(segs["middlewares"], layout)
        traffic_base = st_base + (layout.sticky_entries + layout.token_entries) // BUCKET
        self.traffic = TrafficTable(segs["traffic"], layout, self._locks, traffic_base)
        self.activator = ActivatorTable(segs["activator"], layout)
        self._ejection_locks = traffic_base + layout.max_services   # one per service: its backends' ejections
        self.observations.bind(slot)
        self.middlewares.bind(slot)
        self.middleware_answered = self.middlewares.answered
        self.middleware_fail_open = self.middlewares.fail_open
        self.middleware_attempt = self.middlewares.attempt
        # worker hot path (see observations.py): bound methods, so a call costs no extra frame
        self.observe = self.observations.observe
        self.add_misc = self.observations.add_misc
        self.set_connections = self.observations.set_connections
        self._W = layout.max_workers
        self._inf = self.counters.inf
        self._cq = self.counters.q
        self._wq = self.workers.q
        # the column this process writes in [entry][max_workers + 1] tables (0 = retired = master)
        self._col = 0 if slot is None else slot + 1
        self._crow = self.counters.row_base(-1 if slot is None else slot)
        if slot is not None:
            self._hb = slot * ROW + HEARTBEAT
        self._svc = self.counters.svc_base
        self._be = self.counters.be_base
        # ``account(router, service, backend, ep_method, status, bytes_in, bytes_out, seconds, local, retries)``:
        # one finished exchange on this worker's rows of both tables (``ledger.py``, compiled: a native call)
        self.ledger = Ledger(self.counters, slot, self.observations) if writable and slot is not None else None
        if self.ledger is not None:
            self.account = self.ledger.account
        # ``ratelimit_take(limiter_idx, key, rate, burst, now)``: one token from the node-wide bucket of
        # (limiter, key): (admitted, remaining, retry_after s) (``ratelimit.Taker``, compiled: a native call)
        self.taker = Taker(self.ratelimits, self._hdr, self._rows_i, self._col) if writable else None
        self._words = Words(self.health.q, self.health.d, self._inf) if writable else None   # ``backend_ops``
        if self.taker is not None:
            self.ratelimit_take = self.taker.take
        refuse = []
        if not writable:
            refuse = _WORKER_WRITES + _LOCKING + _ANY_WRITES + _MASTER_WRITES
        else:
            if slot is None:
                refuse += list(_WORKER_WRITES)
            if not creator:
                refuse += list(_MASTER_WRITES)
        for meth in refuse:
            setattr(self, meth, self._refuser(meth, writable))

    @staticmethod
    def _refuser(meth: str, writable: bool):
        why = "a read-only attachment" if not writable else "this attachment (worker-only / master-only call)"

        def refuse(*_a, **_k):
            raise PlaneError(f"Plane.{meth}() is not allowed through {why}")

        return refuse

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def create(cls, layout: PlaneLayout | None = None, tag: str | None = None) -> Plane:
        layout = layout or PlaneLayout()
        prefix = _make_prefix(tag)
        if prefix in _LIVE:
            raise PlaneError(f"this process already created plane {prefix}; pass a distinct tag")
        _unlink_prefix(prefix)  # leftovers of a dead master that had our pid
        sizes = segment_sizes(layout)
        total = sum(sizes.values())
        segs: dict[str, Segment] = {}
        try:
            for s in SEGMENTS:
                segs[s] = Segment.create(segment_name(prefix, s), sizes[s], keep_fd=(s == "locks"))
        except PlaneError as e:
            for seg in segs.values():
                seg.close()
            _unlink_prefix(prefix)
            raise PlaneError(f"{e} (the whole plane needs {total} bytes, {total / 2**20:.1f} MiB)") from None
        hdr = segs["header"].view(0, H.SIZE, "q")
        hdr[H.VERSION_W] = H.VERSION
        hdr[H.MASTER_PID] = os.getpid()
        hdr[H.MASTER_START] = process_start_time(os.getpid())
        hdr[H.SECRET0] = int.from_bytes(secrets.token_bytes(8), "little", signed=True)
        hdr[H.SECRET1] = int.from_bytes(secrets.token_bytes(8), "little", signed=True)
        for i, v in enumerate(layout.as_tuple()):
            hdr[H.LAYOUT + i] = v
        hdr[H.MAGIC_W] = H.MAGIC
        _LIVE.add(prefix)
        atexit.register(_unlink_prefix, prefix, os.getpid())
        return cls(prefix, segs, layout, None, writable=True, creator=True)

    @classmethod
    def attach(cls, name: str, worker_slot: int | None = None, readonly: bool | None = None) -> Plane:
        """Attach by prefix. ``worker_slot=None`` attaches read-only unless ``readonly=False`` is given
        (a non-worker writer, e.g. a health-check helper: its writes go to the retired column)."""
        prefix = name.lstrip("/")
        if prefix_pid(prefix) is None:
            raise PlaneError(f"{name!r} is not a plane name (expected {PREFIX}.<pid>[.<tag>])")
        ro = worker_slot is None if readonly is None else readonly
        hseg = Segment.attach(segment_name(prefix, "header"), H.SIZE, readonly=True)
        try:
            hv = hseg.view(0, H.SIZE, "q")
            if hv[H.MAGIC_W] != H.MAGIC:
                raise PlaneError(f"plane {prefix} is not initialised (bad magic)")
            if hv[H.VERSION_W] != H.VERSION:
                raise PlaneError(f"plane {prefix} has layout version {hv[H.VERSION_W]}, expected {H.VERSION}")
            layout = PlaneLayout.from_tuple(hv[H.LAYOUT : H.LAYOUT + PlaneLayout.field_count()].tolist())
        finally:
            hseg.close()
        if worker_slot is not None and not 0 <= worker_slot < layout.max_workers:
            raise PlaneError(f"worker_slot {worker_slot} out of range [0, {layout.max_workers})")
        sizes = segment_sizes(layout)
        segs: dict[str, Segment] = {}
        try:
            for s in SEGMENTS:
                segs[s] = Segment.attach(segment_name(prefix, s), sizes[s], readonly=ro or s == "header",
                                         keep_fd=(s == "locks"))
        except PlaneError:
            for seg in segs.values():
                seg.close()
            raise
        return cls(prefix, segs, layout, worker_slot, writable=not ro, creator=False)

    def close(self) -> None:
        for t in (self.workers, self.counters, self.health, self.breakers, self.ratelimits, self.sticky, self.names,
                  self.observations, self.ai, self.middlewares, self.traffic):
            t.__dict__.clear()
        for k in [k for k, v in self.__dict__.items() if isinstance(v, memoryview)]:
            del self.__dict__[k]
        for holder in (self.ledger, self.taker, self._words):  # compiled, their typed views hold exports
            if holder is not None:
                holder.close()
        for seg in self._segs.values():
            seg.close()
        self._segs = {}

    def unlink(self) -> list[str]:
        """Remove the plane's segments from /dev/shm (mapped processes keep working until they close)."""
        return _unlink_prefix(self.name)

    def chown(self, uid: int, gid: int) -> None:
        """Give the segments to the user the gateway drops privileges to (its workers attach as that user)."""
        for seg in self._segs.values():
            os.chown(f"{SHM_DIR}/{seg.name.lstrip('/')}", uid, gid)

    def __enter__(self) -> Plane:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        if self.creator:
            self.unlink()

    @staticmethod
    def cleanup_stale() -> list[str]:
        """Unlink the segments of planes whose master is dead; returns the segment names removed.

        A master is dead if its pid does not exist, if its pid now belongs to a process that started at
        another time (pid reuse, read from the header), or if the pid is ours and this process did not
        create that plane (a restarted container master that got the same pid).
        """
        groups: dict[str, list[str]] = {}
        for fname in list_ours():
            prefix, _, _seg = fname.rpartition(".")
            groups.setdefault(prefix, []).append(fname)
        removed = []
        me = os.getpid()
        for prefix, files in groups.items():
            pid = prefix_pid(prefix)
            if pid is None:
                continue
            if pid == me:
                stale = prefix not in _LIVE
            elif not pid_alive(pid):
                stale = True
            else:
                stale = _started_elsewhen(prefix, pid)
            if stale:
                for f in files:
                    if unlink("/" + f):
                        removed.append("/" + f)
        return removed

    # ------------------------------------------------------------------ worker hot path
    def heartbeat(self) -> None:
        self._wq[self._hb] = time.monotonic_ns()

    def report_generation(self, generation: int) -> None:
        self.workers.report_generation(self.worker_slot, generation)

    def inflight_inc(self, backend_idx: int) -> None:
        i = backend_idx * self._W + self.worker_slot
        v = self._inf
        v[i] = v[i] + 1

    def inflight_dec(self, backend_idx: int) -> None:
        i = backend_idx * self._W + self.worker_slot
        v = self._inf
        v[i] = v[i] - 1

    def backend_ops(self, backend_idx: int, clock: Clock) -> BackendOps:
        """The per-request operations on one backend, with their offsets computed once (``backend_ops.py``): the
        hot path calls these instead of the general methods above (same words, same single-writer rules).
        ``clock``: whatever has the ``now`` that ``is_healthy`` compares the passive ``down_until`` with."""
        if self._words is None:
            raise PlaneError("Plane.backend_ops() is not allowed through a read-only attachment")
        if self.worker_slot is None:             # only workers count in-flight requests: inc/dec refuse
            return BackendOps(self._words, backend_idx, -1, clock, self.inflight_inc)
        return BackendOps(self._words, backend_idx, backend_idx * self._W + self.worker_slot, clock, None)

    def inflight(self, backend_idx: int) -> int:
        s = backend_idx * self._W
        return sum(self._inf[s : s + self._hdr[self._rows_i]])

    def least_connections(self, backend_idxs: Sequence[int]) -> int:
        """Position in ``backend_idxs`` of the backend with the fewest in-flight requests node-wide
        (ties: the lowest position; callers rotate the sequence for fairness). ValueError if empty."""
        inf, W, n = self._inf, self._W, self._hdr[self._rows_i]
        best, bestv = -1, 0
        for pos, b in enumerate(backend_idxs):
            s = b * W
            v = sum(inf[s : s + n])
            if best < 0 or v < bestv:
                best, bestv = pos, v
                if v <= 0:
                    break
        if best < 0:
            raise ValueError("least_connections() of an empty sequence")
        return best

    def record(self, router_idx: int, service_idx: int, backend_idx: int, status: int, bytes_in: int,
               bytes_out: int) -> None:
        """Count one finished request (status 0 = no response) for each index that is not -1."""
        q, col, base = self._cq, status_col(status), self._crow
        if router_idx >= 0:
            i = base + router_idx * COLS
            q[i + col] = q[i + col] + 1
            q[i + 6] = q[i + 6] + bytes_in
            q[i + 7] = q[i + 7] + bytes_out
        if service_idx >= 0:
            i = base + self._svc + service_idx * COLS
            q[i + col] = q[i + col] + 1
            q[i + 6] = q[i + 6] + bytes_in
            q[i + 7] = q[i + 7] + bytes_out
        if backend_idx >= 0:
            i = base + self._be + backend_idx * COLS
            q[i + col] = q[i + col] + 1
            q[i + 6] = q[i + 6] + bytes_in
            q[i + 7] = q[i + 7] + bytes_out

    def relay(self, router: int, service: int, backend: int, bytes_in: int, bytes_out: int, seconds: float,
              reached: bool) -> None:
        """One TCP connection or UDP session that ended, for each index that is not -1: relayed (``reached``: a
        backend was connected; its bytes each way and how long it lasted) or a failure (no backend reached)."""
        q = self._cq
        for i in (self._crow + router * COLS if router >= 0 else -1,
                  self._crow + self._svc + service * COLS if service >= 0 else -1,
                  self._crow + self._be + backend * COLS if backend >= 0 else -1):
            if i < 0:
                continue
            if not reached:
                q[i + CONNECTION_FAILURES] += 1
                continue
            q[i + CONNECTIONS] += 1
            q[i + BYTES_IN] += bytes_in
            q[i + BYTES_OUT] += bytes_out
            q[i + CONNECTION_MS] += int(seconds * 1000)

    def is_healthy(self, backend_idx: int, now: float | None = None) -> bool:
        """Active health AND not passively down (``now``: time.monotonic(), read if not given)."""
        return self.health.is_healthy(backend_idx, time.monotonic() if now is None else now)

    def outlier_failure(self, backend_idx: int, gateway: bool) -> tuple[int, int]:
        """Count a failed answer (``gateway``: 502, 503, 504 or none): the (5xx, gateway) streaks it leaves."""
        return self.health.count_failure(backend_idx, self._col, self._hdr[self._rows_i], gateway)

    def outlier_restart(self, backend_idx: int) -> None:
        self.health.restart_streaks(backend_idx)

    def passive_success(self, backend_idx: int) -> None:
        self.health.passive_success(backend_idx)

    def outlier_eject(self, service_idx: int, backend_idx: int, peers: Sequence[int], now: float, reason: str,
                      policy: EjectionPolicy) -> bool:
        """Eject a backend of service ``service_idx`` (``peers``: all its backends) under the service's lock,
        unless it is out already or the policy's limit of its peers are (``health.py``)."""
        k = self._ejection_locks + service_idx
        self._locks.acquire(k)  # type: ignore[union-attr]
        try:
            return self.health.eject(backend_idx, peers, now, _REASONS.index(reason), policy.limit(len(peers)),
                                     policy.base, policy.cap, policy.draw_jitter())
        finally:
            self._locks.release(k)  # type: ignore[union-attr]

    def outlier_decay(self, service_idx: int, peers: Sequence[int], now: float, interval: float) -> None:
        """The master's interval tick: one less ejection multiplier for each backend that stayed in."""
        k = self._ejection_locks + service_idx
        self._locks.acquire(k)  # type: ignore[union-attr]
        try:
            for b in peers:
                self.health.decay(b, now, interval)
        finally:
            self._locks.release(k)  # type: ignore[union-attr]

    def is_ejected(self, backend_idx: int, now: float) -> bool:
        return self.health.is_ejected(backend_idx, now)

    def ejections(self, backend_idx: int) -> dict[str, int]:
        """Ejections of a backend so far, by reason (``health.REASONS``)."""
        return self.health.state(backend_idx, 0.0, self._hdr[self._rows_i])["ejections"]

    def hold_down(self, backend_idx: int, until: float) -> None:
        """Keep the backend out of every pick until ``until`` (time.monotonic()): a provider's ``Retry-After``."""
        self.health.hold_down(backend_idx, until)

    def down_until(self, backend_idx: int) -> float:
        return self.health.down_until(backend_idx)

    def breaker_allow(self, breaker_idx: int, now: float, cooldown: float) -> bool:
        return self.breakers.allow(breaker_idx, now, cooldown)

    def breaker_record(self, breaker_idx: int, success: bool, now: float, failure_threshold: int,
                       success_threshold: int) -> None:
        self.breakers.record(breaker_idx, self._col, success, now, failure_threshold, success_threshold,
                             self._hdr[self._rows_i])

    def breaker_state(self, breaker_idx: int) -> str:
        return self.breakers.state(breaker_idx)

    def sticky_get(self, key: bytes, now: float) -> int | None:
        return self.sticky.get(key, now)

    def sticky_bind(self, key: bytes, backend_idx: int, now: float, ttl: float) -> None:
        self.sticky.bind(key, backend_idx, now, ttl)

    def sticky_unbind(self, key: bytes) -> None:
        self.sticky.unbind(key)

    # AI-agent extensions (ai.py): counters, priority admission gauges, token windows, model-probe states
    def ai_add(self, name: str, n: int = 1) -> None:
        self.ai.add(self._col, name, n)

    def priority_gauge(self, service_idx: int, word: int, n: int) -> None:
        self.ai.gauge_add(self.worker_slot, service_idx, word, n)

    def priority_gauges(self, service_idx: int) -> list[int]:
        return self.ai.gauges(service_idx, self._hdr[self._rows_i])

    def token_record(self, key: bytes, window: float, n: int, now: float) -> None:
        self.ai.token_record(key, window, n, now, self._col)

    def token_usage(self, key: bytes, window: float, now: float) -> tuple[float, list[int]]:
        return self.ai.token_usage(key, window, now, self._hdr[self._rows_i])

    def token_charge(self, budgets: list[tuple[bytes, float, float]], n: int,
                     now: float) -> tuple[int, list[float], list[int]]:
        """Pre-charge ``n`` to every (key, window, limit) of ``budgets`` if all are under their limit, atomically
        across workers: (-1, or the index of the first budget at or over its limit: nothing charged; the usages
        read before the charge; the refused budget's sub-window amounts, see ``AiTable.token_charge``)."""
        return self.ai.token_charge(budgets, n, now, self._col, self._hdr[self._rows_i])

    def token_settle(self, key: bytes, window: float, charged: int, at: float, n: int, now: float) -> None:
        """Replace a pre-charge of ``charged`` made at ``at`` by the real ``n``, recorded at ``now``."""
        self.ai.token_settle(key, window, charged, at, n, now, self._col)

    def ai_counters(self) -> dict[str, int]:
        return self.ai.counters(self._hdr[self._rows_i])

    # ------------------------------------------------------------------ traffic management (traffic.py)
    def mirror_select(self, service_idx: int, percents: tuple[int, ...]) -> list[int]:
        return self.traffic.mirror_select(service_idx, percents)

    def mirror_outcome(self, service_idx: int, mirror: int, outcome: str) -> None:
        self.traffic.add(service_idx, outcome_word(mirror, outcome))

    def failover_activated(self, service_idx: int) -> None:
        self.traffic.add(service_idx, _ACTIVATIONS)

    def retry_budget_exhausted(self, service_idx: int) -> None:
        self.traffic.add(service_idx, _EXHAUSTED)

    def retry_active(self, service_idx: int) -> int:
        return self.traffic.retry_active(service_idx, self._hdr[self._rows_i])

    def retry_change(self, service_idx: int, n: int) -> None:
        """This worker started (+1) or ended (-1) a retry on the service."""
        self.traffic.retry_change(self.worker_slot, service_idx, n)  # type: ignore[arg-type]

    def traffic_totals(self) -> dict[int, dict]:
        return self.traffic.split()

    # ------------------------------------------------------------------ the serving activator (activator.py)
    def queue_change(self, service_idx: int, n: int) -> None:
        """This worker holds ``n`` more (or fewer) requests waiting for an instance of the revision."""
        self.activator.add(self.worker_slot, service_idx, _Q_QUEUED, n)  # type: ignore[arg-type]

    def queue_refused(self, service_idx: int, timeout: bool) -> None:
        """A request the revision's queue refused: full, or waited past its timeout (``timeout``)."""
        self.activator.add(self.worker_slot, service_idx, _Q_TIMEOUT if timeout else _Q_FULL, 1)  # type: ignore

    def queue_waited(self, service_idx: int, seconds: float) -> None:
        self.activator.waited(self.worker_slot, service_idx, seconds)  # type: ignore[arg-type]

    def queued(self, service_idx: int) -> int:
        return self.activator.queued(service_idx, self._hdr[self._rows_i])

    def queue_totals(self, service_idx: int) -> dict:
        return self.activator.totals(service_idx, self._hdr[self._rows_i])

    def agent_state(self, backend_idx: int) -> str | None:
        return self.ai.agent(backend_idx)

    def set_agent_state(self, backend_idx: int, state: str | None) -> None:
        self.ai.set_agent(backend_idx, state)

    # ------------------------------------------------------------------ master
    def set_healthy(self, backend_idx: int, healthy: bool) -> None:
        self.health.set_healthy(backend_idx, healthy)

    def set_worker(self, slot: int, pid: int) -> None:
        """Give ``slot`` to a new worker ``pid`` (before it attaches). A previous occupant must be dead;
        if the master did not fold it yet, it is folded here."""
        if not 0 <= slot < self._W:
            raise PlaneError(f"worker slot {slot} out of range [0, {self._W})")
        if self.workers.pid(slot):
            self.fold_worker(slot)
        if slot + 1 > self._hdr[H.ROWS]:  # noqa: PLR1730 (the hint only grows; store only then)
            self._hdr[H.ROWS] = slot + 1
        self.workers.set_worker(slot, pid)

    def last_heartbeat(self, slot: int) -> int:
        return self.workers.last_heartbeat(slot)

    def worker_pid(self, slot: int) -> int:
        return self.workers.pid(slot)

    def worker_generation(self, slot: int) -> int:
        return self.workers.generation(slot)

    def fold_worker(self, slot: int) -> None:
        """After reaping a dead worker: its counters go into ``retired``, its in-flight counts are dropped,
        its row is zeroed, so the slot can be given to a new worker."""
        hdr = self._hdr
        seq = hdr[H.FOLD_SEQ]
        hdr[H.FOLD_SEQ] = seq + 1
        try:
            self.counters.fold(slot)
            self.health.fold(slot)
            self.breakers.fold(slot)
            self.ratelimits.fold(slot)
            self.observations.fold(slot)
            self.ai.fold(slot)
            self.middlewares.fold(slot)
            self.traffic.fold(slot)
            self.activator.fold(slot)
        finally:
            hdr[H.FOLD_SEQ] = seq + 2
        self.workers.clear(slot)

    def reset_backend(self, idx: int) -> None:
        rows = self._hdr[self._rows_i]
        self.counters.reset_backend(idx, rows)
        self.health.reset(idx, rows)

    def reset_router(self, idx: int) -> None:
        self.counters.reset_router(idx, self._hdr[self._rows_i])
        self.observations.reset_router(idx, self._hdr[self._rows_i])

    def reset_service(self, idx: int) -> None:
        self.counters.reset_service(idx, self._hdr[self._rows_i])
        self.observations.reset_service(idx, self._hdr[self._rows_i])
        self.traffic.reset(idx)
        self.activator.reset(idx, self._hdr[self._rows_i])

    def reset_middleware(self, idx: int) -> None:
        self.middlewares.reset(idx, self._hdr[self._rows_i])

    def reset_limiter(self, idx: int) -> None:
        self.ratelimits.reset_limiter(idx)

    def reset_breaker(self, idx: int) -> None:
        self.breakers.reset(idx, self._hdr[self._rows_i])

    def set_name(self, kind: str, idx: int, name: str) -> None:
        """Label a slot for ``snapshot()`` / the status tool; kind is one of names.KINDS."""
        self.names.set(kind, idx, name)

    # ------------------------------------------------------------------ readers
    def totals(self) -> dict:
        """Counters summed over live rows + retired, consistent with respect to fold_worker:
        {"routers"|"services"|"backends": {idx: {"1xx".."5xx", "err", "bytes_in", "bytes_out"}},
         "inflight": {backend idx: n}} (only non-zero entries)."""
        flat, rows = self._sums_outside_folds(self.counters)
        out = self.counters.split(flat)
        out["inflight"] = self._inflight_all(rows)
        return out

    def observation_totals(self) -> dict:
        """``ObservationTable.split`` of the observations summed over live rows + retired, read under the
        FOLD_SEQ seqlock like ``totals()`` (histogram buckets, requests by entrypoint/method, gateway-written
        responses, retries, exporter counters, open connections per worker)."""
        flat, rows = self._sums_outside_folds(self.observations)
        return self.observations.split(flat, rows)

    def middleware_totals(self) -> dict:
        """``MiddlewareTable.split`` of the per-middleware counters summed over live rows + retired (read under
        the FOLD_SEQ seqlock like ``totals()``): replies by middleware and status code, fail-opens."""
        flat, _ = self._sums_outside_folds(self.middlewares)
        return self.middlewares.split(flat)

    def _sums_outside_folds(self, table: Any) -> tuple[Any, int]:
        """``table.sums(rows)`` read under the FOLD_SEQ seqlock (retried while the master folds a dead worker's
        row), so a sum never counts a folded row twice or not at all; returns (sums, rows)."""
        hdr = self._hdr
        for _ in range(1000):
            s1 = hdr[H.FOLD_SEQ]
            if s1 & 1:
                time.sleep(0.0005)
                continue
            rows = hdr[self._rows_i]
            flat = table.sums(rows)
            if hdr[H.FOLD_SEQ] == s1:
                break
        return flat, rows

    def _inflight_all(self, rows: int) -> dict[int, int]:
        inf, W = self._inf, self._W
        out = {}
        for b in range(self.layout.max_backends):
            v = sum(inf[b * W : b * W + rows])
            if v:
                out[b] = v
        return out

    def snapshot(self, now: float | None = None) -> dict:
        """Everything ``a3s-gateway status`` prints (indices carry names where the master set them)."""
        now = time.monotonic() if now is None else now
        return {
            "name": self.name,
            "master_pid": self._hdr[H.MASTER_PID],
            "layout": asdict(self.layout),
            "shm_bytes": sum(segment_sizes(self.layout).values()),
            "workers": self.workers.rows(time.monotonic_ns()),
            "backends": self.backend_states(now),
            "breakers": self.breaker_states(),
            "ratelimit": self.ratelimits.occupancy(now),
            "sticky": self.sticky.occupancy(now),
        }

    def backend_states(self, now: float | None = None) -> list[dict]:
        """Each named or busy backend's health, in-flight count and totals: the part of ``snapshot`` a
        dashboard refresh needs, without the scans of the rate-limit and sticky tables."""
        now = time.monotonic() if now is None else now
        rows = self._hdr[self._rows_i]
        named = self.names.named("backends")
        inflight = self._inflight_all(rows)
        flat = self.counters.sums(rows)
        be_base = self.counters.be_base
        backends = []
        for b in range(self.layout.max_backends):
            c = flat[be_base + b * COLS : be_base + (b + 1) * COLS]
            hs = self.health.state(b, now, rows)
            busy = (any(c) or b in inflight or hs["consecutive_failures"] or not hs["active_healthy"]
                    or any(hs["ejections"].values()))
            if b not in named and not busy and not hs["passive_down_for_s"]:
                continue
            backends.append(
                {
                    "idx": b,
                    "name": named.get(b),
                    "healthy": self.health.is_healthy(b, now),
                    **hs,
                    "inflight": inflight.get(b, 0),
                    "requests": sum(c[:6]),
                    "connections": c[CONNECTIONS],
                    "connection_failures": c[CONNECTION_FAILURES],
                    "bytes_in": c[BYTES_IN],
                    "bytes_out": c[BYTES_OUT],
                }
            )
        return backends

    def breaker_states(self) -> list[dict]:
        """Every active or named circuit breaker's node-wide state."""
        rows = self._hdr[self._rows_i]
        named = self.names.named("breakers")
        return [{"idx": i, "name": named.get(i), **self.breakers.info(i, rows)}
                for i in sorted(set(self.breakers.active()) | set(named))]


def _started_elsewhen(prefix: str, pid: int) -> bool:
    """True if the header of ``prefix`` records a master start time that ``pid`` does not have."""
    try:
        with open(f"{SHM_DIR}/{prefix}.header", "rb") as f:
            raw = f.read(8 * (H.MASTER_START + 1))
    except OSError:
        return False
    if len(raw) < 8 * (H.MASTER_START + 1):
        return False
    recorded = int.from_bytes(raw[8 * H.MASTER_START : 8 * (H.MASTER_START + 1)], "little", signed=True)
    actual = process_start_time(pid)
    return bool(recorded and actual and recorded != actual)
