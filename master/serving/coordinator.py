"""One node's part in a serving cluster: with ``[serving] redis_url`` set, the nodes make one set of decisions.

Every ``ROUND`` (1 s) the controller calls ``round``: this node renews or tries the lease, publishes each
revision's concurrency over the last second and its ready instances (``ServingCluster.publish``), and then

* as the **leader**: reads every revision's cluster ``Load`` into a decider of its own (fed only with cluster
  sums, one sample a second) and republishes its latest cluster-wide decision, so followers keep it fresh;
* as a **follower**: reads the leader's decision for each revision;
* when Redis cannot be reached: the node is **alone** and decides for its own load with the controller's local
  decider (fail open: logged at most every ``WARN_EVERY`` s, counted in ``errors``).

``decide`` (from the controller's tick) turns that into this node's count. What a node runs depends on whether its
executor's instances are shared (``ScaleExecutor.shared``):

* shared (``kubernetes``, ``http``): the cluster-wide count is the revision's count; only the leader (or a node
  alone) calls ``scale``, the others only route to the instances they see (a node before its first round,
  ``joining``, does not scale them either, so a node joining never resets the count to ``initial_scale``);
* node-local (``process``, ``docker``): each node runs its share, ``ceil(desired / nodes)`` bounded by the
  revision's ``min_scale`` and ``max_scale`` (so those bound each node), and the leader decides the cluster-wide
  count with bounds multiplied by the node count.

Invariants: a node's role changes only in ``round``; the leader's decider is dropped when the node stops leading,
so a node that leads again starts from the count in force (a decider created for more than one instance starts in
panic: a takeover never scales a loaded revision down); a follower with no fresh decision keeps its count.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from redis.exceptions import RedisError

from ...shared import log as gwlog
from .autoscaler import BUCKET, Decider, Decision
from .cluster import Load, ServingCluster

if TYPE_CHECKING:
    from .controller import Revision

log = gwlog.get("master.serving")

ROUND = 1.0
WARN_EVERY = 10.0
Role = Literal["joining", "leader", "follower", "alone"]


@dataclass(eq=False)
class View:
    """What the cluster says about one revision."""

    load: Load | None = None                 # the leader's last read of the cluster's load
    decider: Decider | None = None           # the leader's, fed with cluster sums
    desired: int | None = None               # the cluster-wide count: decided here (leader) or read (follower)
    nodes: int = 1                           # the nodes ``desired`` was decided for


class Coordinator:
    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self.cluster = ServingCluster(settings["redis_url"], prefix=settings["key_prefix"], lease=settings["lease"],
                                      timeout=settings["timeout_ms"] / 1000)
        self.role: Role = "joining"
        self.holder: str | None = None           # who holds the lease, as last read
        self.views: dict[tuple[str, str], View] = {}
        self.errors = 0
        self.last_error: str | None = None
        self._warned_at = -WARN_EVERY

    async def round(self, revisions: list[Revision], now: float) -> None:
        """Publish this node's loads, renew or try the lease, and read what this role needs."""
        self.views = {(r.service, r.name): self.views.get((r.service, r.name), View()) for r in revisions}
        try:
            leading = await self.cluster.is_leader()      # first, so a slow round does not delay the renewal
            for rev in revisions:
                await self.cluster.publish(_key(rev), rev.decider.average(now, BUCKET) or 0.0, len(rev.ready))
            self.holder = await self.cluster.leader()
            for rev in revisions:
                view = self.views[(rev.service, rev.name)]
                if leading:
                    await self._lead(rev, view, now)
                else:
                    view.decider = None
                    followed = await self.cluster.decision(_key(rev))
                    view.desired, view.nodes = followed if followed is not None else (None, view.nodes)
        except RedisError as e:
            self._alone(e)
            return
        if leading != (self.role == "leader"):
            log.info(f"serving: this node ({self.cluster.node}) is now the "
                     f"{'leader' if leading else 'follower of ' + str(self.holder)}")
        self.role = "leader" if leading else "follower"

    async def _lead(self, rev: Revision, view: View, now: float) -> None:
        view.load = await self.cluster.total(_key(rev))
        if view.decider is None:        # taking over: start from the count in force
            view.decider = Decider(rev.decider.settings, now, _in_force(rev, view, view.load.nodes))
        view.decider.record(now, view.load.concurrency)
        if view.desired is not None:
            await self.cluster.publish_decision(_key(rev), view.desired, view.nodes)

    def _alone(self, error: RedisError) -> None:
        self.errors += 1
        self.last_error = f"{type(error).__name__}: {error}"
        for view in self.views.values():
            view.decider = None
        now = time.monotonic()
        if self.role != "alone" or now - self._warned_at >= WARN_EVERY:
            self._warned_at = now
            log.warning(f"serving: Redis unavailable ({self.last_error}); this node decides alone for its own load "
                        f"(fail-open, {self.errors} so far)")
        self.role = "alone"

    def decide(self, rev: Revision, now: float) -> tuple[int, str, Decision | None] | None:
        """This node's count for ``rev``, why, and the leader's decision it comes from; None: decide alone (no
        cluster answer), or keep the count (a follower with no fresh decision: ``(rev.desired, ...)``)."""
        view = self.views.get((rev.service, rev.name))
        if view is None or self.role in ("alone", "joining"):
            return None
        if self.role == "leader":
            return self._decide_as_leader(rev, view, now)
        if view.desired is None:
            return rev.desired, f"following {self.holder}: no fresh decision, count kept", None
        local = self.share(rev, view.desired, view.nodes)
        return local, f"following {self.holder}: {view.desired} cluster-wide over {view.nodes} node(s)", None

    def _decide_as_leader(self, rev: Revision, view: View, now: float) -> tuple[int, str, Decision | None] | None:
        if view.decider is None or view.load is None:
            return None
        nodes = max(1, view.load.nodes)
        settings = rev.decider.settings
        ready = len(rev.ready)
        if not rev.executor.shared:     # each node runs its own: the bounds are per node, the count is the sum
            settings = replace(settings, min_scale=settings.min_scale * nodes, max_scale=settings.max_scale * nodes)
            ready = view.load.ready
        view.decider.settings = settings
        decision = view.decider.decide(now, ready, _in_force(rev, view, nodes))
        if decision.desired < 0:
            return None
        view.desired, view.nodes = decision.desired, nodes
        local = self.share(rev, decision.desired, nodes)
        reason = f"{decision.reason}; leader: {decision.desired} cluster-wide over {nodes} node(s)"
        return local, reason, replace(decision, desired=local, reason=reason)

    @staticmethod
    def share(rev: Revision, desired: int, nodes: int) -> int:
        """This node's part of a cluster-wide count."""
        if rev.executor.shared:
            return desired
        settings = rev.decider.settings
        return min(max(math.ceil(desired / max(1, nodes)), settings.min_scale), settings.max_scale)

    def scales_here(self, rev: Revision) -> bool:
        """Whether this node calls the executor's ``scale`` for decisions (not for a wake from zero)."""
        return not rev.executor.shared or self.role in ("leader", "alone")

    def snapshot(self) -> dict[str, Any]:
        return {"node": self.cluster.node, "role": self.role, "leader": self.holder, "errors": self.errors,
                "last_error": self.last_error, "key_prefix": self.settings["key_prefix"]}

    def revision_snapshot(self, rev: Revision) -> dict[str, Any] | None:
        view = self.views.get((rev.service, rev.name))
        if view is None:
            return None
        load = view.load if self.role == "leader" else None
        return {"desired": view.desired, "nodes": view.nodes,
                "concurrency": round(load.concurrency, 3) if load is not None else None,
                "ready": load.ready if load is not None else None}

    async def close(self) -> None:
        """Give the lease up at once, so another node takes over without waiting for it to lapse."""
        await self.cluster.resign()
        await self.cluster.close()


def _in_force(rev: Revision, view: View, nodes: int) -> int:
    """The cluster-wide count wanted now: the leader's last decision, else this node's count as if every node ran
    it (so a new leader's first decision keeps the scale-to-zero grace like any other)."""
    if view.desired is not None:
        return view.desired
    return rev.desired if rev.executor.shared else rev.desired * max(1, nodes)


def _key(rev: Revision) -> str:
    return f"{rev.service}/{rev.name}"
