"""The master's serving controller, once per node: for every revision an executor, a decider and the readiness of
its instances; the generations the workers run list only ready instances.

Loops (tasks of the master's event loop):

* ``_sample`` every ``SAMPLE`` s: the node-wide concurrency of every revision (in flight on its instances, from
  the plane's per-backend rows, plus requests waiting in the activator) goes into its decider's 1 s buckets. A
  revision with requests waiting and no instance is woken at once (the activator's poke), not at the next tick.
* ``_tick`` every ``tick`` s (Knative: 2 s): each decider decides and the executor is told the count; with
  ``[serving] redis_url`` set, the count is the cluster's (``coordinator.py``: the leader decides from every
  node's load, the others follow), unless Redis cannot be reached.
* ``_coordinate`` every ``ROUND`` s, only with ``redis_url``: this node's loads to Redis, the lease, the leader's
  decisions (``Coordinator.round``).
* ``_probe`` per instance not yet ready: ``GET ready_path`` every ``PROBE_INTERVAL`` with a ``PROBE_TIMEOUT``,
  until it answers (any status below 500); then the revision's ready set changes. A refused connection (the
  instance does not listen yet) is retried after ``CONNECT_BACKOFF``, a short fixed backoff, so a cold start is
  seen within that much of the instance listening.
* ``_roll`` every ``SAMPLE`` s: each gradual rollout whose step is over is judged on its new revision's requests
  during the step (``rollout.py``); a changed split publishes a generation.
* ``poke``: a worker's first waiter for a revision with no instance wakes it at once.

Invariants:

* a change of any revision's ready set publishes one generation (changes that arrive while one is being
  published are coalesced into the next), from the last good static config through ``ControlPlane``;
* a reload that keeps a revision with the same executor settings keeps its executor, its instances and its
  decider's history; a revision removed or whose executor settings changed has its executor closed;
* a reload that keeps a rollout's identity (its settings, both revisions' executor settings) keeps its progress;
* ``stop`` (the gateway's stop, SIGTERM included) closes every executor, which stops every instance.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ...shared import log as gwlog
from ...shared.config.serving_schema import revision_service
from ...shared.plane import Plane
from ...shared.plane.observations import NB
from .autoscaler import Decider, Decision, Settings
from .coordinator import ROUND, Coordinator
from .executor import Instance, ScaleExecutor
from .executors import executor_class
from .revisions import served
from .rollout import PROMOTED, ROLLED_BACK, Rollout, Sample, identity, opening_split

log = gwlog.get("master.serving")

SAMPLE = 0.1
PROBE_INTERVAL = 0.2
PROBE_TIMEOUT = 0.3
CONNECT_BACKOFF = 0.025   # a refused connection: the instance is not listening yet (a cold start)
DECISIONS_KEPT = 20


@dataclass(eq=False)
class Revision:
    service: str
    name: str
    settings: dict[str, Any]                    # the revision's normalized table
    executor: ScaleExecutor
    decider: Decider
    desired: int = 0
    ready: dict[str, Instance] = field(default_factory=dict)      # by address
    probing: dict[str, asyncio.Task] = field(default_factory=dict)
    decisions: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=DECISIONS_KEPT))
    concurrency: float = 0.0
    queued: int = 0
    scaling: asyncio.Lock = field(default_factory=asyncio.Lock)    # one executor.scale at a time
    failing: str | None = None      # the executor's error while the revision has no ready instance
    errors_seen: int = 0

    @property
    def lb(self) -> str:
        return revision_service(self.service, self.name)


class Serving:
    def __init__(self, plane: Plane, republish: Callable[[str], Awaitable[Any]]) -> None:
        self.plane = plane
        self.republish = republish
        self.revisions: dict[tuple[str, str], Revision] = {}
        self.ticks: dict[str, float] = {}                          # service -> tick interval
        self.rollouts: dict[str, Rollout] = {}                     # service -> its rollout (kept across reloads)
        self.slots: dict[str, Any] = {"backends": {}, "services": {}}
        self._tasks: list[asyncio.Task] = []
        self._publishing: asyncio.Task | None = None
        self._dirty = False
        self._session: aiohttp.ClientSession | None = None
        self.coordinator: Coordinator | None = None               # with [serving] redis_url: the cluster's part

    # -- what the generations see
    def ready(self, service: str, revision: str) -> list[str]:
        rev = self.revisions.get((service, revision))
        return sorted(rev.ready) if rev is not None else []

    def failing(self, service: str, revision: str) -> str | None:
        """Why the revision cannot get an instance now (its executor's last error while none is ready): the
        activator answers its waiters 503 with it instead of holding them until ``queue_timeout``."""
        rev = self.revisions.get((service, revision))
        return rev.failing if rev is not None else None

    # -- reconfiguration
    def configure(self, data: dict[str, Any]) -> None:
        """Match the static config: new revisions get an executor (scaled to ``initial_scale`` at once), kept ones
        keep theirs, removed ones are closed."""
        now = time.monotonic()
        wanted = {(name, rev): (serving, r) for name, serving in served(data.get("services", {})).items()
                  for rev, r in serving["revisions"].items()}
        self.ticks = {name: serving["tick"] for name, serving in served(data.get("services", {})).items()}
        for key in [k for k, rev in self.revisions.items() if k not in wanted
                    or _executor_settings(wanted[k][1]) != _executor_settings(rev.settings)]:
            rev = self.revisions.pop(key)
            log.info(f"serving {key[0]}/{key[1]}: revision removed or its executor changed; stopping its instances")
            self._close(rev)
        for key, (serving, r) in wanted.items():
            settings = Settings.of(serving, r)
            rev = self.revisions.get(key)
            if rev is not None:
                rev.settings = r
                if rev.decider.settings != settings:
                    rev.decider.settings = settings
                continue
            cls = executor_class(r["executor"])
            assert cls is not None, "revisions.problems() rejects unknown executors"
            holder: list[Revision] = []
            executor = cls(key[0], key[1], r[r["executor"]], lambda h=holder: self._changed(h[0]))
            rev = Revision(key[0], key[1], r, executor, Decider(settings, now, len(executor.instances())))
            holder.append(rev)
            self.revisions[key] = rev
            rev.desired = min(max(r["initial_scale"], r["min_scale"]), r["max_scale"])
            self._spawn(self._scale(rev, rev.desired, f"initial_scale {r['initial_scale']}"))
        self._configure_rollouts(data, now)
        self._configure_cluster(data.get("serving") or {})
        if not self._tasks:
            self._tasks = [self._spawn(self._sample()), self._spawn(self._tick()), self._spawn(self._roll()),
                           self._spawn(self._coordinate())]

    # -- gradual rollouts (master/serving/rollout.py)
    def split(self, service: str, serving: dict[str, Any]) -> dict[str, int] | None:
        """The split of the service's rollout; a generation compiled before ``configure`` saw a new or changed
        rollout gets the split that rollout starts with, never the old rollout's."""
        key = identity(serving)
        if key is None:
            return None
        rollout = self.rollouts.get(service)
        return rollout.split() if rollout is not None and rollout.key == key else opening_split(serving["rollout"])

    def _configure_cluster(self, settings: dict[str, Any]) -> None:
        """A coordinator for ``[serving]``'s Redis, remade when its settings change; none without ``redis_url``."""
        wanted = settings if settings.get("redis_url") else None
        current = self.coordinator
        if current is not None and current.settings != wanted:
            self._spawn(current.close())
            self.coordinator = current = None
        if wanted is not None and current is None:
            self.coordinator = Coordinator(wanted)

    def _configure_rollouts(self, data: dict[str, Any], now: float) -> None:
        """A rollout whose identity (settings and revisions) a reload keeps keeps its progress; a new or changed
        one starts over, a removed one gives the split back to ``traffic``."""
        wanted = {name: (serving["rollout"], key) for name, serving in served(data.get("services", {})).items()
                  if (key := identity(serving)) is not None}
        changed = False
        for name in [n for n, r in self.rollouts.items() if n not in wanted or wanted[n][1] != r.key]:
            log.info(f"serving {name}: rollout removed or changed; the split is the config's again")
            del self.rollouts[name]
            changed = True
        for name, (settings, key) in wanted.items():
            if name not in self.rollouts:
                rollout = self.rollouts[name] = Rollout(settings, key, now, self._outcomes(name, settings["to"]))
                log.info(f"serving {name}: rollout from {settings['from']} to {settings['to']} starts at "
                         f"{rollout.percent}%")
                changed = True
        if changed:
            self._publish()

    def _outcomes(self, service: str, revision: str) -> Sample:
        """The revision's answers so far, node-wide, from the plane (requests, failures, duration histogram)."""
        idx = self.slots["services"].get(revision_service(service, revision))
        if idx is None:
            return Sample(0, 0, (0,) * NB)
        counts = self.plane.totals()["services"].get(idx, {})
        durations = self.plane.observation_totals()["service_durations"].get(idx)
        failed = counts.get("5xx", 0) + counts.get("err", 0)
        return Sample(sum(counts.get(c, 0) for c in ("1xx", "2xx", "3xx", "4xx")) + failed, failed,
                      tuple(durations[0]) if durations else (0,) * NB)

    async def _roll(self) -> None:
        """Every ``SAMPLE`` s, judge each rollout whose step is over; the plane is read only then."""
        while True:
            await asyncio.sleep(SAMPLE)
            now = time.monotonic()
            for name, rollout in list(self.rollouts.items()):
                if rollout.due(now) and rollout.advance(now, self._outcomes(name, rollout.settings["to"])):
                    step = rollout.steps[-1]
                    p99 = "over 10s" if step["p99_s"] is None else f"{step['p99_s']}s"
                    figures = f"({step['requests']} requests, error rate {step['error_rate']:.1%}, p99 {p99})"
                    if rollout.state == ROLLED_BACK:
                        log.warning(f"serving {name}: rollout {rollout.reason} {figures}")
                    else:
                        log.info(f"serving {name}: rollout step {step['verdict']} {figures}"
                                 + (f"; promoted: {rollout.reason}" if rollout.state == PROMOTED else ""))
                    self._publish()

    def applied(self, compiled: dict[str, Any]) -> None:
        self.slots = compiled["slots"]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._publishing is not None:
            self._publishing.cancel()
        revisions, self.revisions = list(self.revisions.values()), {}
        await asyncio.gather(*(self._close_now(rev) for rev in revisions), return_exceptions=True)
        if self.coordinator is not None:
            await self.coordinator.close()
            self.coordinator = None
        if self._session is not None:
            await self._session.close()
        self._tasks = []

    def _close(self, rev: Revision) -> None:
        self._spawn(self._close_now(rev))
        if rev.ready:
            self._publish()

    async def _close_now(self, rev: Revision) -> None:
        for task in rev.probing.values():
            task.cancel()
        await rev.executor.close()

    def _spawn(self, coro: Any) -> asyncio.Task:
        return asyncio.get_running_loop().create_task(coro)

    # -- scaling
    async def _scale(self, rev: Revision, desired: int, reason: str, decision: Decision | None = None,
                     wake: bool = False) -> None:
        if decision is not None and decision.desired >= 0 and (decision.desired != rev.desired or
                                                                not rev.decisions):
            rev.decisions.append(decision.as_dict())
        elif decision is None:
            rev.decisions.append({"at": round(time.monotonic(), 3), "desired": desired, "ready": len(rev.ready),
                                  "reason": reason})
        if desired != rev.desired:
            log.info(f"serving {rev.service}/{rev.name}: {rev.desired} -> {desired} instances ({reason})")
        rev.desired = desired
        await self._apply(rev, wake)

    async def _apply(self, rev: Revision, wake: bool = False) -> None:
        """Tell the executor the count wanted now (one call at a time per revision); a follower whose instances
        are shared leaves that to the leader, except to wake a revision at zero."""
        if self.coordinator is not None and not wake and not self.coordinator.scales_here(rev):
            return
        try:
            async with rev.scaling:
                await rev.executor.scale(rev.desired)
        except Exception as e:  # noqa: BLE001 — an executor bug is an error of that revision, not of the master
            rev.executor.last_error = f"scale({rev.desired}) raised {e!r}"
            rev.executor.errors += 1
            log.exception(f"serving {rev.service}/{rev.name}: executor failed")

    async def _tick(self) -> None:
        last: dict[str, float] = {}
        while True:
            await asyncio.sleep(SAMPLE)
            now = time.monotonic()
            for rev in list(self.revisions.values()):
                tick = self.ticks.get(rev.service, 2.0)
                if now - last.get(rev.service, 0.0) < tick:
                    continue
                await self._decide(rev, now)
            for service, tick in self.ticks.items():
                if now - last.get(service, 0.0) >= tick:
                    last[service] = now

    async def _decide(self, rev: Revision, now: float) -> None:
        """One tick's decision: the cluster's when this node is in one, else its own decider's."""
        followed = self.coordinator.decide(rev, now) if self.coordinator is not None else None
        if followed is None:
            decision = rev.decider.decide(now, len(rev.ready), rev.desired)
            if decision.desired >= 0:
                await self._scale(rev, decision.desired, decision.reason, decision)
            return
        desired, reason, decision = followed
        if decision is not None or desired != rev.desired:
            await self._scale(rev, desired, reason, decision)
        else:
            await self._apply(rev)

    async def _coordinate(self) -> None:
        while True:
            await asyncio.sleep(ROUND)
            if self.coordinator is None or not self.revisions:
                continue
            try:
                await self.coordinator.round(list(self.revisions.values()), time.monotonic())
            except Exception:  # noqa: BLE001 — a bug in one round must not end coordination for good
                log.exception("serving: cluster round failed")

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE)
            now = time.monotonic()
            for rev in list(self.revisions.values()):
                in_flight = sum(self.plane.inflight(i) for i in self._backend_slots(rev))
                idx = self.slots["services"].get(rev.lb)
                rev.queued = self.plane.queued(idx) if idx is not None else 0
                rev.concurrency = in_flight + rev.queued
                rev.decider.record(now, rev.concurrency)
                self._check_failing(rev)
                if rev.queued and rev.desired == 0:     # a poke lost (a worker restarted): the same, later
                    await self._scale(rev, rev.decider.wake(now), f"{rev.queued} request(s) waiting, no instance",
                                      wake=True)
                else:   # the executor may be in a backoff: keep telling it what is wanted
                    live = [i for i in rev.executor.instances() if i.state != "terminating"]
                    if rev.queued and len(live) < rev.desired:
                        await self._apply(rev)

    def poke(self, lb: str) -> None:
        """The activator's poke: a worker holds the first request for revision ``lb`` and it may have no
        instance; waking it does not wait for the next sample."""
        for rev in self.revisions.values():
            if rev.lb == lb and rev.desired == 0:
                self._spawn(self._scale(rev, rev.decider.wake(time.monotonic()), "a request waits, no instance",
                                        wake=True))

    def _check_failing(self, rev: Revision) -> None:
        """A new executor error while no instance is ready: publish it, so waiters get a 503 that says why."""
        errors = rev.executor.errors
        if errors != rev.errors_seen:
            rev.errors_seen = errors
            if not rev.ready and rev.failing != rev.executor.last_error:
                rev.failing = rev.executor.last_error
                self._publish()

    def _backend_slots(self, rev: Revision) -> list[int]:
        backends = self.slots["backends"]
        return [i for a in rev.ready if (i := backends.get(f"{rev.lb}|http://{a}")) is not None]

    # -- instances and readiness
    def _changed(self, rev: Revision) -> None:
        """The executor's instances changed: forget the gone ones, probe the new ones."""
        if self.revisions.get((rev.service, rev.name)) is not rev:
            return
        current = {i.address: i for i in rev.executor.instances() if i.state != "terminating"}
        gone = [a for a in rev.ready if a not in current]
        for address in gone:
            del rev.ready[address]
        for address in [a for a in rev.probing if a not in current]:
            rev.probing.pop(address).cancel()
        for address, instance in current.items():
            if address not in rev.ready and address not in rev.probing:
                rev.probing[address] = self._spawn(self._probe(rev, instance))
        if gone:
            self._publish()

    async def _probe(self, rev: Revision, instance: Instance) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        url = f"http://{instance.address}{rev.settings['ready_path']}"
        timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT)
        while True:
            started = time.monotonic()
            interval = PROBE_INTERVAL
            try:
                async with self._session.get(url, timeout=timeout, headers={"K-Network-Probe": "queue"}) as resp:
                    if resp.status < 500:
                        break
            except aiohttp.ClientConnectorError:
                interval = CONNECT_BACKOFF
            except (aiohttp.ClientError, TimeoutError, OSError):
                pass
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
        rev.probing.pop(instance.address, None)
        rev.ready[instance.address] = instance
        rev.failing = None
        log.info(f"serving {rev.service}/{rev.name}: instance {instance.address} is ready")
        self._publish()

    def _publish(self) -> None:
        """Publish a generation with the current ready sets (coalesced while one is being published)."""
        self._dirty = True
        if self._publishing is None or self._publishing.done():
            self._publishing = self._spawn(self._publish_loop())

    async def _publish_loop(self) -> None:
        while self._dirty:
            self._dirty = False
            await self.republish("serving: instances changed")

    # -- observability
    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        coordinator = self.coordinator
        cluster = coordinator.snapshot() if coordinator is not None else None
        for rev in self.revisions.values():
            decider = rev.decider
            live = [i for i in rev.executor.instances() if i.state != "terminating"]
            now = time.monotonic()
            idx = self.slots["services"].get(rev.lb)
            service = out.setdefault(rev.service, {"revisions": {}, "rollout": None, "cluster": cluster})
            service["revisions"][rev.name] = {
                "desired": rev.desired,
                "starting": len([i for i in live if i.address not in rev.ready]),
                "ready": len(rev.ready),
                "instances": [{"id": i.id, "address": i.address, "ready": i.address in rev.ready,
                               "state": i.state} for i in rev.executor.instances()],
                "in_flight": round(rev.concurrency - rev.queued, 3),
                "queued": rev.queued,
                "queue": self.plane.queue_totals(idx) if idx is not None else None,
                "stable_concurrency": round(decider.average(now, decider.settings.stable_window) or 0.0, 3),
                "panic_concurrency": round(decider.average(now, decider.settings.panic_window) or 0.0, 3),
                "panicking": decider.panic_time is not None,
                "target": decider.settings.target,
                "decisions": list(rev.decisions),
                "executor": rev.executor.describe(),
                "failing": rev.failing,
                "cluster": coordinator.revision_snapshot(rev) if coordinator is not None else None,
            }
        for name, rollout in self.rollouts.items():
            if name in out:
                out[name]["rollout"] = rollout.as_dict()
        return out


def _executor_settings(revision: dict[str, Any]) -> tuple[str, Any]:
    return revision["executor"], revision[revision["executor"]]
