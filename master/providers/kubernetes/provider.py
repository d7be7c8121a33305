"""The Kubernetes provider: reflectors → translation → one contribution, published like a file reload.

Flow: every reflector (``watch.py``) calls ``_changed()`` when its store changed; the rebuild waits until no
change has arrived for ``throttle`` seconds (at most ``max_wait × throttle`` after the first one, so a steady
trickle still gets applied), and only once every kind has been listed, so a half-synced cluster never becomes
a generation. A rebuild translates the stores (``ingress.py``, and ``gateway.py`` when ``gateway_api`` is on: the
Gateway API kinds are watched only then, since a cluster without their CRDs would never finish listing) into one
``Part`` per object (and ``crd.py`` for our ``Route`` CRD when ``crd`` is on), checks the result
with the gateway's own validator (``accepts``), and when it is invalid checks each object alone (our Middleware
objects first, then every other object together with the good Middlewares, which it may use) and leaves out the
ones that break it — reported with their namespace/name and the key path inside the object in ``snapshot()``,
the log and the object's status — so the rest keeps serving. An object that was good before and is bad now is
served as it last was good (its errors say so), as a reloaded file keeps its last good config. Only a
contribution that differs from the published one asks the control plane for a generation (``on_change``); a
burst of events therefore costs few rebuilds, and a no-op costs none.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable, Callable
from typing import Any

from lightkube.resources.core_v1 import Secret, Service
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.resources.networking_v1 import Ingress, IngressClass

from ....shared import log as gwlog
from .client import make_client
from .crd import Middleware, Route, RouteTranslator
from .gateway import Gateway, GatewayClass, GatewayTranslator, HTTPRoute, ReferenceGrant
from .grpcroute import GRPCRoute
from .ingress import IngressTranslator
from .part import PROVIDER, Part
from .status import StatusWriter
from .tls import CertFiles
from .watch import Kind, Reflector

log = gwlog.get("master.kubernetes")

KINDS = (
    Kind("Ingress", Ingress, namespaced=True, selected=True, status_is_ours=True),
    Kind("IngressClass", IngressClass, namespaced=False),
    Kind("Service", Service, namespaced=True),
    Kind("EndpointSlice", EndpointSlice, namespaced=True),
    Kind("Secret", Secret, namespaced=True),
)
GATEWAY_KINDS = (
    Kind("GatewayClass", GatewayClass, namespaced=False, status_is_ours=True),
    Kind("Gateway", Gateway, namespaced=True, status_is_ours=True),
    Kind("HTTPRoute", HTTPRoute, namespaced=True, selected=True, status_is_ours=True),
    Kind("GRPCRoute", GRPCRoute, namespaced=True, selected=True, status_is_ours=True),
    Kind("ReferenceGrant", ReferenceGrant, namespaced=True),
)
CRD_KINDS = (Kind("Route", Route, namespaced=True, selected=True, status_is_ours=True),
             Kind("Middleware", Middleware, namespaced=True, selected=True, status_is_ours=True))
CONTEXT = "<kubernetes>: "         # how the validator names the contribution in its messages


def empty() -> dict[str, Any]:
    return {"routers": {}, "services": {}, "middlewares": {}, "certificates": []}


def merge(data: dict[str, Any], contribution: dict[str, Any], entrypoints: list[str]) -> bool:
    """Add the contribution to a config dict (names the files define win); True when it added anything.

    Certificates go to every TLS entrypoint among ``entrypoints`` ([] = all), after the files' own."""
    for key in ("routers", "services", "middlewares"):
        for name, value in contribution[key].items():
            data[key].setdefault(name, copy.deepcopy(value))
    if contribution["certificates"]:
        for name, ep in data["entrypoints"].items():
            tls = ep.get("tls")
            if tls and ep.get("protocol", "http") == "http" and (not entrypoints or name in entrypoints):
                tls["certificates"] = [*tls.get("certificates", []), *copy.deepcopy(contribution["certificates"])]
    return bool(contribution["routers"] or contribution["services"] or contribution["middlewares"]
                or contribution["certificates"])


def placed(part: Part, problem: str) -> str:
    """The validator's message with the part's generated names as their place in the object (``spec.rate``)."""
    problem = problem.replace(CONTEXT, "")
    for generated, where in sorted(part.paths.items(), key=lambda kv: -len(kv[0])):
        problem = problem.replace(generated, where)
    return problem


class KubernetesProvider:
    def __init__(self, settings: dict[str, Any], on_change: Callable[[str], Awaitable[None]],
                 accepts: Callable[[dict[str, Any]], str | None],
                 entrypoints: Callable[[], dict[str, Any]] = dict) -> None:
        """``accepts(contribution)`` says why the config with it would be invalid, or None; ``entrypoints()``
        are the config's, which Gateway listeners attach to by port."""
        self.settings = settings
        self.entrypoints = entrypoints
        self.on_change = on_change
        self.accepts = accepts
        self.contribution = empty()
        self.certs = CertFiles(settings["certs_dir"])
        self.reflectors: dict[str, Reflector] = {}
        self.errors: dict[str, list[str]] = {}        # "Ingress ns/name" → what was left out and why
        self.parts: list[Part] = []
        self._last_good: dict[str, Part] = {}         # source → its tables as last accepted
        self.stats: dict[str, Any] = {"rebuilds": 0, "translations": 0, "last_rebuild": None,
                                      "last_translation": None, "rejected_updates": 0}
        self.status: StatusWriter | None = None
        self._dirty: asyncio.Event | None = None
        self._first_change = self._last_change = 0.0
        self._tasks: list[asyncio.Task] = []
        self.client: Any = None

    def start(self) -> None:
        self.client = make_client(self.settings)
        self._dirty = asyncio.Event()
        for kind in KINDS + (GATEWAY_KINDS if self.settings["gateway_api"] else ()) + (
                CRD_KINDS if self.settings["crd"] else ()):
            reflector = Reflector(self.client, kind, self.settings["namespaces"], self.settings["label_selector"],
                                  self._changed)
            self.reflectors[kind.name] = reflector
            reflector.start()
        self._tasks = [asyncio.get_running_loop().create_task(self._debounced(), name="k8s-rebuild")]
        if self.settings["status"]["enabled"]:
            self.status = StatusWriter(self.client, self.settings, self.reflectors, lambda: self.parts)
            self.status.start()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.status is not None:
            await self.status.stop()
        for reflector in self.reflectors.values():
            await reflector.stop()
        if self.client is not None:
            await self.client.close()

    def snapshot(self) -> dict[str, Any]:
        """The provider as ``/api/providers`` and the metrics show it (the store providers' shape: ``name``,
        ``connected``, ``last_sync``, ``last_error``, ``objects``, ``rejected_updates``), with each watch's kind,
        objects, last event, last relist and last error, and ``leader`` (True: this replica writes status; False:
        a follower; None: status writing is off)."""
        watches = [r.snapshot() for r in self.reflectors.values()]
        failures = [(w["last_error"]["at"], f"{w['kind']}: {w['last_error']['error']}") for w in watches
                    if w["last_error"]]
        return {"name": PROVIDER, "connected": bool(watches) and all(w["synced"] for w in watches),
                "last_sync": self.stats["last_translation"], "last_error": max(failures)[1] if failures else None,
                "objects": sum(len(self.contribution[k]) for k in ("routers", "services", "middlewares")),
                "watches": watches, **self.stats,
                "routers": len(self.contribution["routers"]), "services": len(self.contribution["services"]),
                "errors": self.errors, "leader": self.status.is_leader if self.status else None}

    def _changed(self) -> None:
        assert self._dirty is not None
        now = time.monotonic()
        if not self._dirty.is_set():
            self._first_change = now
        self._last_change = now
        self._dirty.set()

    async def _debounced(self) -> None:
        assert self._dirty is not None
        throttle = self.settings["throttle"]
        while True:
            await self._dirty.wait()
            while True:
                now = time.monotonic()
                quiet_at = self._last_change + throttle
                latest = self._first_change + throttle * self.settings["max_wait"]
                if now >= min(quiet_at, latest):
                    break
                await asyncio.sleep(min(quiet_at, latest) - now)
            if not all(r.has_synced for r in self.reflectors.values()):
                await asyncio.sleep(throttle)     # the first lists are still running: wait for all of them
                continue
            self._dirty.clear()
            try:
                if self.rebuild():
                    await self.on_change("kubernetes")
            except Exception as e:  # noqa: BLE001 — logged; the next change tries again
                log.error(f"kubernetes rebuild failed: {type(e).__name__}: {e}")

    def rebuild(self) -> bool:
        """Translate the stores; True when the accepted contribution changed (and was adopted)."""
        self.stats["translations"] += 1
        parts = IngressTranslator(self.settings, self.reflectors).parts()
        if self.settings["gateway_api"]:
            parts += GatewayTranslator(self.settings, self.reflectors, self.entrypoints()).parts()
        if self.settings["crd"]:
            parts += RouteTranslator(self.reflectors).parts()
        contribution = self._combine(parts)
        problem = self.accepts(contribution)
        if problem is None:
            self._last_good = {p.source: p for p in parts}
        else:
            contribution = self._combine(self._good_parts(parts))
            problem = self.accepts(contribution)
        errors = {p.source: p.errors for p in parts if p.errors}
        if errors and errors != self.errors:
            self.stats["rejected_updates"] += 1       # counted once per new set of problems, as the KV providers
        self.errors = errors
        self.stats["last_translation"] = time.time()
        for source, errors in self.errors.items():
            for error in errors:
                log.warning(f"{source}: {error}")
        self.parts = parts
        if self.status is not None:
            self.status.poke()
        if problem is not None:
            log.error(f"kubernetes objects rejected together, keeping the previous ones: {problem}")
            return False
        if contribution == self.contribution:
            return False
        self.contribution = contribution
        self.stats["rebuilds"] += 1
        self.stats["last_rebuild"] = time.time()
        self.certs.prune({f for pair in contribution["certificates"] for f in pair.values()})
        return True

    def _good_parts(self, parts: list[Part]) -> list[Part]:
        """The parts that validate: Middleware objects alone, then each other object with the good Middlewares.

        A bad part serves its last good tables when they still validate; otherwise it contributes nothing."""
        good: list[Part] = []
        last_good, self._last_good = self._last_good, {}
        for middlewares_pass in (True, False):
            base = list(good)
            for part in parts:
                if part.source.startswith("Middleware ") != middlewares_pass:
                    continue
                problem = self.accepts(self._combine([*base, part]))
                if problem is None:
                    good.append(part)
                    self._last_good[part.source] = part
                    continue
                problem = placed(part, problem)
                kept = last_good.get(part.source)
                if kept is not None and self.accepts(self._combine([*base, kept])) is None:
                    part.errors.append(f"invalid, its last good version is served: {problem}")
                    part.routers, part.services, part.middlewares = kept.routers, kept.services, kept.middlewares
                    part.certificates = kept.certificates
                    good.append(part)
                    self._last_good[part.source] = kept
                else:
                    part.errors.append(f"left out: {problem}")
                    part.routers, part.services, part.middlewares, part.certificates = {}, {}, {}, []
        return good

    def _combine(self, parts: list[Part]) -> dict[str, Any]:
        out = empty()
        seen: set[tuple[str, str]] = set()
        for part in parts:
            out["routers"].update(part.routers)
            out["services"].update(part.services)
            out["middlewares"].update(part.middlewares)
            for pem in part.certificates:
                pair = self.certs.pair(*pem)
                if (key := (pair["cert_file"], pair["key_file"])) not in seen:
                    seen.add(key)
                    out["certificates"].append(pair)
        return out
