"""Compiling config generations in the master, with the shared-memory slot indices each one uses.

Every named thing that has node-wide state on the plane — backends (per service), routers, services, rate
limiters, circuit breakers and middlewares (their counters, keyed by name only) — gets a stable index from a
``SlotAllocator``. An object whose key is unchanged by a reload keeps its index and so its state (in-flight
counts, counters, health, limiter buckets, breaker state). Limiters and breakers are keyed by name *and* a
hash of their parameters: changing a limit starts it fresh. Indices handed to new keys are zeroed on the plane
before the generation is published, and a dropped key's index becomes reusable only one generation later, once
no worker can still be using it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from ..shared.compiled import compile_generation
from ..shared.config import GatewayConfig
from ..shared.config.gateway_schema import load_balancers
from ..shared.config.redact import redact_url
from ..shared.plane import Plane, SlotAllocator

KINDS = ("backends", "routers", "services", "limiters", "breakers", "middlewares")
STATEFUL_MIDDLEWARES = {"rate-limit": "limiters", "circuit-breaker": "breakers"}


def backend_key(service: str, url: str) -> str:
    return f"{service}|{url}"


def middleware_key(name: str, params: dict[str, Any]) -> str:
    digest = hashlib.sha256(orjson.dumps(params, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    return f"{name}|{digest}"


class Generations:
    def __init__(self, plane: Plane) -> None:
        self.plane = plane
        layout = plane.layout
        capacity = {"backends": layout.max_backends, "routers": layout.max_routers,
                    "services": layout.max_services, "limiters": layout.max_limiters,
                    "breakers": layout.max_breakers, "middlewares": layout.max_middlewares}
        self.allocators = {kind: SlotAllocator(capacity[kind], kind) for kind in KINDS}
        self.current = 0

    def _keys(self, cfg: GatewayConfig) -> dict[str, list[str]]:
        keys: dict[str, list[str]] = {kind: [] for kind in KINDS}
        keys["services"] = list(cfg.services)
        for name, lb in load_balancers(cfg.services):
            keys["backends"] += [backend_key(name, s["url"]) for s in lb["servers"]]
        keys["routers"] = list(cfg.routers)
        for name, params in cfg.middlewares.items():
            keys["middlewares"].append(name)     # per-middleware counters: by name, kept across param changes
            kind = STATEFUL_MIDDLEWARES.get(params["type"])
            if kind:
                keys[kind].append(middleware_key(name, params))
        return keys

    def compile(self, cfg: GatewayConfig) -> dict[str, Any]:
        """The next generation: config plus slot indices; fresh slots are zeroed before it is published."""
        generation = self.current + 1
        slots: dict[str, dict[str, int]] = {}
        resets = {"backends": self.plane.reset_backend, "routers": self.plane.reset_router,
                  "services": self.plane.reset_service, "limiters": self.plane.reset_limiter,
                  "breakers": self.plane.reset_breaker, "middlewares": self.plane.reset_middleware}
        for kind, keys in self._keys(cfg).items():
            assignment = self.allocators[kind].assign(keys, generation)
            fresh = set(assignment.fresh)
            for key, idx in assignment.indices.items():
                if idx in fresh:
                    resets[kind](idx)
                    # limiter/breaker keys carry a params hash; the status tool shows the middleware name (and a
                    # backend's URL without its password)
                    self.plane.set_name(kind, idx, key.rsplit("|", 1)[0] if kind in ("limiters", "breakers")
                                        else redact_url(key))
            slots[kind] = dict(assignment.indices)
        compiled = compile_generation(cfg, generation)
        compiled["slots"] = slots
        return compiled

    def published(self, generation: int) -> None:
        """Every worker runs ``generation``: indices dropped before it may be reused from now on."""
        self.current = generation
        for allocator in self.allocators.values():
            allocator.retire(generation - 1)
