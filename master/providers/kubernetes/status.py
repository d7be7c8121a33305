"""Status written back to the cluster, by one replica only: the holder of a ``coordination.k8s.io`` Lease.

Leader election is client-go's: read the Lease; take it when nobody holds it, when we hold it, or when the
holder's ``renewTime + leaseDurationSeconds`` has passed; every write is a replace carrying the Lease's
``resourceVersion``, so of two replicas trying at once the API server lets exactly one win (409 for the other).
The leader renews every third of the duration; a follower retries as often. On a clean stop the leader
empties ``holderIdentity`` so another replica takes over at once instead of after the duration.

What is written: each Ingress we serve gets ``.status.loadBalancer.ingress`` from ``status.published_address``
(an IP or a hostname) or from the ``status.published_service``'s own load-balancer status. A write happens only
when the stored object's status differs from the wanted one (so status is written once per change, and the
MODIFIED event the write causes is a no-op for the rebuild, ``watch.py``). Gateway API objects get the status
their translation wants (``Part.status``), our ``Route`` and ``Middleware`` CRDs whether they are served and
the validator's errors (and every object with problems gets an Event: ``events.py``); a condition keeps its
stored ``lastTransitionTime`` while its status, reason and message stay the same, so an unchanged status
compares equal and is not written. Merge patches carry no ``resourceVersion``, so they do not conflict; a failed
write is retried at the next pass.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.networking_v1 import IngressStatus
from lightkube.types import PatchType

from ....shared import log as gwlog
from .crd import CRD_STATUS, crd_status
from .events import EventReporter
from .gateway import ROUTE_KINDS, Gateway, GatewayClass, HTTPRoute, route_status
from .grpcroute import GRPCRoute
from .part import Part
from .watch import Reflector

log = gwlog.get("master.kubernetes")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(stamp: str | None) -> float:
    if not stamp:
        return 0.0
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def address_entry(address: str) -> dict[str, str]:
    try:
        ipaddress.ip_address(address)
        return {"ip": address}
    except ValueError:
        return {"hostname": address}


class StatusWriter:
    def __init__(self, client: AsyncClient, settings: dict[str, Any], reflectors: dict[str, Reflector],
                 parts: Callable[[], list[Part]]) -> None:
        self.client = client
        self.settings = settings
        self.election = settings["leader_election"]
        self.identity = self.election["identity"] or f"{socket.gethostname()}-{os.getpid()}"
        self.reflectors = reflectors
        self.parts = parts
        self.is_leader = not self.election["enabled"]
        self.stats: dict[str, Any] = {"writes": 0, "last_error": None, "leader_since": None}
        self._poke = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.events = EventReporter(client, reflectors, self.identity, self.election["namespace"])

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="k8s-status")

    def poke(self) -> None:
        """A rebuild happened: write what changed (if leader)."""
        self._poke.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.is_leader and self.election["enabled"]:
            try:
                await self._release()
            except Exception as e:  # noqa: BLE001 — the Lease then simply expires
                log.warning(f"could not release the leader lease: {e}")

    async def _run(self) -> None:
        interval = self.election["lease_duration"] / 3
        while True:
            try:
                if self.election["enabled"]:
                    await self._elect()
                if self.is_leader:
                    await self._write_all()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 — status is retried at the next pass
                self.stats["last_error"] = {"at": time.time(), "error": f"{type(e).__name__}: {e}"}
                log.warning(f"kubernetes status pass failed: {type(e).__name__}: {e}")
            try:
                await asyncio.wait_for(self._poke.wait(), interval)
            except TimeoutError:
                pass
            self._poke.clear()

    # -- leader election
    async def _elect(self) -> None:
        ns, name, duration = self.election["namespace"], self.election["name"], self.election["lease_duration"]
        try:
            lease = (await self.client.get(Lease, name, namespace=ns)).to_dict()
        except ApiError as e:
            if e.status.code != 404:
                raise
            lease = None
        now = _now()
        if lease is None:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": int(duration),
                             "acquireTime": now, "renewTime": now, "leaseTransitions": 0}}
            await self._claim(lambda: self.client.create(Lease.from_dict(body)))
            return
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        expired = _parse(spec.get("renewTime")) + (spec.get("leaseDurationSeconds") or duration) < time.time()
        if holder and holder != self.identity and not expired:
            self._set_leader(False)
            return
        taking = holder != self.identity
        spec = {**spec, "holderIdentity": self.identity, "leaseDurationSeconds": int(duration), "renewTime": now}
        if taking:
            spec.update(acquireTime=now, leaseTransitions=(spec.get("leaseTransitions") or 0) + (1 if holder else 0))
        lease["spec"] = spec
        await self._claim(lambda: self.client.replace(Lease.from_dict(lease)))

    async def _claim(self, write: Callable[[], Any]) -> None:
        try:
            await write()
        except ApiError as e:
            if e.status.code not in (409, 422):
                raise
            self._set_leader(False)         # another replica wrote the Lease first
            return
        self._set_leader(True)

    def _set_leader(self, leader: bool) -> None:
        if leader != self.is_leader:
            log.info(f"kubernetes status: {'leader' if leader else 'follower'} ({self.identity})")
            self.stats["leader_since"] = time.time() if leader else None
        self.is_leader = leader

    async def _release(self) -> None:
        ns, name = self.election["namespace"], self.election["name"]
        lease = (await self.client.get(Lease, name, namespace=ns)).to_dict()
        if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
            lease["spec"]["holderIdentity"] = ""
            await self.client.replace(Lease.from_dict(lease))
        self.is_leader = False

    # -- writes
    def wanted_addresses(self) -> list[dict[str, str]] | None:
        status = self.settings["status"]
        if status["published_address"]:
            return [address_entry(status["published_address"])]
        if status["published_service"]:
            ns, _, name = status["published_service"].partition("/")
            service = self.reflectors["Service"].get(ns, name)
            if service is None:
                return None
            return list(((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [])
        return None

    async def _write_all(self) -> None:
        addresses = self.wanted_addresses()
        for part in self.parts():
            kind, _, ref = part.source.partition(" ")
            ns, _, name = ref.rpartition("/")
            if kind == "Ingress" and addresses is not None:
                await self._write(kind, ns, name, {"loadBalancer": {"ingress": addresses}})
            elif kind in GATEWAY_STATUS and part.status is not None:
                await self._write(kind, ns, name, part.status)
            elif kind in CRD_STATUS:
                await self._write(kind, ns, name, crd_status(part))
        await self.events.report(self.parts())

    async def _write(self, kind: str, ns: str, name: str, wanted: dict[str, Any]) -> None:
        obj = self.reflectors[kind].get(ns, name)
        if obj is None:
            return
        if kind in ROUTE_KINDS:
            wanted = route_status(wanted, obj.get("status"), self.settings["gateway_controller"])
        wanted = _with_times(wanted, obj.get("status") or {})
        if _normal(obj.get("status")) == _normal(wanted):
            return
        resource = IngressStatus if kind == "Ingress" else CRD_STATUS.get(kind) or GATEWAY_STATUS[kind]
        await self.client.patch(resource, name, {"status": wanted}, namespace=ns or None,
                                patch_type=PatchType.MERGE)
        obj["status"] = wanted              # the MODIFIED event will say the same; no second write meanwhile
        self.stats["writes"] += 1


GATEWAY_STATUS = {"GatewayClass": GatewayClass.Status, "Gateway": Gateway.Status, "HTTPRoute": HTTPRoute.Status,
                  "GRPCRoute": GRPCRoute.Status}


def _with_times(wanted: Any, stored: Any) -> Any:
    """``wanted`` with every condition's ``lastTransitionTime``: the stored one when the condition is unchanged."""
    if isinstance(wanted, list):
        if all(isinstance(c, dict) and "type" in c and "status" in c for c in wanted) and wanted:
            before = {c.get("type"): c for c in stored or [] if isinstance(c, dict)} if isinstance(stored, list) \
                else {}
            out = []
            for c in wanted:
                old = before.get(c["type"]) or {}
                same = all(old.get(k) == c.get(k) for k in ("status", "reason", "message", "observedGeneration"))
                out.append({**c, "lastTransitionTime": old["lastTransitionTime"] if same and
                            old.get("lastTransitionTime") else _now_seconds()})
            return out
        olds = stored if isinstance(stored, list) else []
        return [_with_times(w, olds[i] if i < len(olds) else None) for i, w in enumerate(wanted)]
    if isinstance(wanted, dict):
        base = stored if isinstance(stored, dict) else {}
        return {k: _with_times(v, base.get(k)) for k, v in wanted.items()}
    return wanted


def _now_seconds() -> str:
    """Condition times are RFC 3339 to the second, as the API server's schema asks."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _normal(status: Any) -> Any:
    """A status with empty lists and tables dropped (the API server omits them)."""
    if isinstance(status, dict):
        out = {k: _normal(v) for k, v in status.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(status, list):
        return [_normal(v) for v in status]
    return status
