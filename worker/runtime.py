"""A worker's runtime objects for one config generation: routes, services, backends and router tables.

Built from the compiled generation the master sends (``shared/compiled.py``); never mutated afterwards. The
worker swaps its single ``runtime`` reference between requests, and an exchange keeps the runtime (route,
service, backend) it started with, so a reload never changes a request in flight. Upstream pools belong to the
worker, not to a generation: a backend that survives a reload keeps its warm connections.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

from ..shared import transport
from ..shared.config.gateway_schema import load_balancers
from ..shared.config.redact import redact_url
from ..shared.ipmatch import IPSet
from ..shared.plane import Plane
from ..shared.plane.backend_ops import Clock
from ..shared.rules import Rule, parse_rule
from . import tls
from .chain import Chain
from .router import RouterTable
from .services import balancer
from .services.activator import Activator
from .services.affinity import Affinity
from .services.failover import Failover
from .services.mirroring import Mirroring
from .services.outliers import Outliers
from .services.panic import LastResort, PanicBalancer
from .services.sticky import Sticky
from .services.upstream_pool import UpstreamPool
from .services.weighted import Fields, KindBalancer, Picked, Weighted
from .upstream.http1 import UpstreamProtocol

INTERNAL_WHOAMI = "whoami@internal"
INTERNAL_UNRESOLVED = "unresolved@internal"   # answers 500: a Gateway API rule whose backends cannot be resolved
INTERNAL_UNAVAILABLE = "unavailable@internal"  # answers 503: a Kubernetes Service with no ready endpoint
INTERNAL_ACME = "acme-http01@internal"     # answers ACME HTTP-01 challenges (router added by master/acme.py)


class Backend:
    """One server of a service, as seen by this worker. Health and in-flight counts live on the shared-memory
    plane (slot ``idx``), so every worker sees the same values; the per-request operations are the plane's
    (``Plane.backend_ops``, native when compiled)."""

    __slots__ = ("acquire", "h2", "host", "host_header", "idx", "is_healthy", "passive_success", "plane", "pool",
                 "port", "release", "scheme", "shown_url", "url", "weight")

    def __init__(self, url: str, weight: int, pool: UpstreamPool, idx: int, plane: Plane, clock: Clock,
                 gateway_streak: bool = False, http_version: str = "1.1") -> None:
        self.url = url
        self.shown_url = redact_url(url)       # as access log lines and spans show it (a password masked)
        self.scheme = transport.protocol(url)  # unix:// and vsock:// servers speak http (or h2c with +h2c)
        # spoken to in HTTP/2 (upstream/http2.py) by every client protocol; gRPC calls to https:// always are
        self.h2 = self.scheme == "h2c" or (self.scheme == "https" and http_version == "2")
        self.weight = weight
        self.pool = pool
        self.idx = idx
        self.plane = plane
        where = pool.endpoint
        if where.transport == "tcp":
            self.host, self.port = where.address
            default_port = self.port == (443 if self.scheme == "https" else 80)
            host = f"[{self.host}]" if ":" in self.host else self.host
            self.host_header = (host if default_port else f"{host}:{self.port}").encode()
        else:                                  # no host name to send: what curl --unix-socket sends
            self.host, self.port = "localhost", 0
            self.host_header = b"localhost"
        ops = plane.backend_ops(idx, clock)
        self.is_healthy: Callable[[], bool] = ops.is_healthy
        self.acquire: Callable[[], None] = ops.inc
        self.release: Callable[[], None] = ops.dec
        # a good answer ends the failure streak(s) outlier detection counts (``services/outliers.py``)
        self.passive_success: Callable[[], None] = ops.outlier_success if gateway_streak else ops.passive_success

    def inflight(self) -> int:
        return self.plane.inflight(self.idx)


class Service:
    """A service as the exchange uses it: a leaf (``backends`` and their ``balancer``), a service of services
    (``kind`` picks through to a leaf) or an internal one (``internal``: the gateway answers). Native when
    compiled (``runtime.pxd``): the exchange reads its fields as struct fields."""

    def __init__(self, name: str, backends: list[Backend], balancer: balancer.Balancer, pass_host_header: bool,
                 connect_timeout: float, response_timeout: float, idx: int = -1, internal: str | None = None,
                 outliers: Outliers | None = None, kind: Weighted | Failover | Mirroring | None = None) -> None:
        self.name = name
        self.backends = backends
        self.balancer = balancer
        self.pass_host_header = pass_host_header
        self.connect_timeout = connect_timeout
        self.response_timeout = response_timeout
        self.idx = idx
        self.internal = internal
        self.outliers = outliers        # passive health / outlier detection; None = counts nothing
        self.sticky: Sticky | Affinity | None = None
        self.kind = kind                # a service of services: picks through to a leaf
        self.activator: Activator | None = None  # a served revision's admission and queue (services/activator.py)

    def __repr__(self) -> str:
        return f"Service({self.name!r})"

    def pick(self, headers: Fields | None, now: float) -> Picked | None:
        """(leaf service, backend, Set-Cookie values) for a request with ``headers`` (None: a bare pick, no
        session), or None when this service cannot serve — how health propagates to a parent."""
        if self.kind is not None:
            return self.kind.pick(headers, now)
        if self.sticky is None or headers is None:
            backend, cookie = self.balancer.pick(), None
        else:
            backend, cookie = self.sticky.pick(headers, now)
        if backend is None:
            return None
        return self, backend, () if cookie is None else (cookie,)


class Route:
    """A router of one generation: its rule, the service it sends to and its middleware chain. Native when
    compiled (``runtime.pxd``), like ``Service``."""

    def __init__(self, name: str, rule: Rule, priority: int, service: Service, chain: Chain,
                 entrypoints: list[str] | None = None, idx: int = -1) -> None:
        self.name = name
        self.rule = rule
        self.priority = priority
        self.service = service
        self.chain = chain
        self.entrypoints = entrypoints if entrypoints is not None else []
        self.idx = idx

    def __repr__(self) -> str:
        return f"Route({self.name!r})"


class Runtime:
    def __init__(self, generation: int, config: dict[str, Any], tables: dict[str, RouterTable],
                 services: dict[str, Service], last_resort: LastResort | None = None) -> None:
        self.generation = generation
        self.config = config
        self.tables = tables
        self.services = services
        self.last_resort = last_resort       # None: no load balancer has a panic threshold (services/panic.py)
        self.trusted_forwarders = {
            name: IPSet(ep["forwarded_headers"]["trusted_ips"])
            for name, ep in config.get("entrypoints", {}).items() if ep["forwarded_headers"]["trusted_ips"]
        }

    def forwarded_for_trusted(self, entrypoint: str, client_ip: str) -> bool:
        """Whether this peer's X-Forwarded-For is kept (``forwarded_headers.trusted_ips``); checked per connection."""
        trusted = self.trusted_forwarders.get(entrypoint)
        return trusted is not None and client_ip in trusted


PoolKey = tuple[Any, ...]
"""(scheme, endpoint: ``shared/transport.Endpoint``), plus (ca_file, insecure_skip_verify) for https:// servers,
plus ("proxy", version) for servers sent a PROXY protocol header."""


def build(compiled: dict[str, Any], pools: dict[PoolKey, UpstreamPool],
          make_pool: Callable[..., UpstreamPool], plane: Plane, clock: Clock,
          build_middlewares: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Runtime:
    """Build the runtime of one generation, reusing (and creating) upstream pools in ``pools``.

    ``compiled["slots"]`` gives each backend, router, service, limiter and breaker its plane index
    (see ``master/generations.py`` for the keys)."""
    config = compiled["config"]
    slots = compiled["slots"]
    services: dict[str, Service] = {
        INTERNAL_WHOAMI: Service(INTERNAL_WHOAMI, [], balancer.RoundRobin([]), True, 0, 0, internal="whoami"),
        INTERNAL_ACME: Service(INTERNAL_ACME, [], balancer.RoundRobin([]), True, 0, 0, internal="acme"),
        INTERNAL_UNRESOLVED: Service(INTERNAL_UNRESOLVED, [], balancer.RoundRobin([]), True, 0, 0,
                                     internal="unresolved"),
        INTERNAL_UNAVAILABLE: Service(INTERNAL_UNAVAILABLE, [], balancer.RoundRobin([]), True, 0, 0,
                                      internal="unavailable"),
    }
    last_resort = LastResort()
    panicking = False
    for name, lb in load_balancers(config.get("services", {})):
        idx = slots["services"][name]
        peers = [slots["backends"][f"{name}|{server['url']}"] for server in lb["servers"]]
        outliers = Outliers.of(lb, idx, peers, plane)
        backends = []
        for server, backend_idx in zip(lb["servers"], peers, strict=True):
            scheme = server["url"].partition("://")[0].lower()
            key: PoolKey = (scheme, transport.endpoint(server["url"]))
            if scheme == "https":            # the service's TLS options are part of what a pooled connection is
                key += (lb["tls"]["ca_file"], lb["tls"]["insecure_skip_verify"])
            proxy = (lb.get("proxy_protocol") or {}).get("version", 0)
            pooled = key + (("proxy", proxy),) if proxy else key
            pool = pools.get(pooled)
            if pool is None:
                pool = pools[pooled] = make_pool(*key)
                if proxy:                    # each connection names its client: one client, never pooled
                    pool.proxy_version, pool.max_idle = proxy, 0
            pool.idle_timeout = lb["timeouts"]["idle"]
            backends.append(Backend(server["url"], server.get("weight", 1), pool, backend_idx, plane, clock,
                                    gateway_streak=outliers is not None and outliers.resets_both,
                                    http_version=lb.get("http_version", "1.1")))
        strategy = balancer.make(lb["strategy"], backends)
        od = lb["outlier_detection"]
        if od is not None and od["healthy_panic_threshold"]:
            strategy = PanicBalancer(strategy, od["healthy_panic_threshold"], od["panic"] == "fail", clock,
                                     last_resort)
            panicking = True
        service = services[name] = Service(
            name=name,
            backends=backends,
            balancer=strategy,
            pass_host_header=lb["pass_host_header"],
            connect_timeout=lb["timeouts"]["connect"],
            response_timeout=lb["timeouts"]["response_header"],
            idx=idx,
            outliers=outliers,
        )
        if lb.get("activator") is not None:
            service.activator = Activator(service, lb["activator"], plane)
        if lb["sticky"] is not None:
            service.sticky = Sticky(lb["sticky"], service.idx, backends, service.balancer, plane)
        if lb.get("affinity") is not None or (lb.get("agent_health") is not None and service.sticky is None):
            # conversation affinity and/or the model probe's busy fallback (services/affinity.py)
            service.sticky = Affinity(lb.get("affinity"), service.idx, backends, service.balancer, plane,
                                      busy_fallback=lb.get("agent_health") is not None)
    for name in config.get("services", {}):
        _service_of_services(name, config["services"], services, slots["services"], plane,
                             last_resort if panicking else None)
    middlewares = build_middlewares(config.get("middlewares", {})) if build_middlewares is not None else {}
    http_entrypoints = [n for n, ep in config.get("entrypoints", {}).items() if ep.get("protocol", "http") == "http"]
    routes: list[Route] = []
    mw_slots = slots.get("middlewares", {})
    for name, r in config.get("routers", {}).items():
        eps = r.get("entrypoints") or http_entrypoints
        if not any(e in http_entrypoints for e in eps):
            continue
        names = [m for m in r.get("middlewares", []) if m in middlewares]
        chain = Chain([middlewares[m] for m in names], [mw_slots.get(m, -1) for m in names],
                      plane.middleware_answered if plane.worker_slot is not None else None)
        routes.append(Route(name, parse_rule(r["rule"], kind="http"), r["priority"], services[r["service"]],
                            chain, list(eps), slots["routers"][name]))
    tables = {ep: RouterTable(r for r in routes if ep in r.entrypoints) for ep in http_entrypoints}
    return Runtime(compiled["generation"], config, tables, services, last_resort if panicking else None)


def _service_of_services(name: str, configs: dict[str, Any], services: dict[str, Service],
                         slots: dict[str, int], plane: Plane, last_resort: LastResort | None) -> Service:
    """The service ``name``, building a service of services after its children (validation ruled out cycles)."""
    service = services.get(name)
    if service is not None:
        return service

    def child(child_name: str) -> Service:
        return _service_of_services(child_name, configs, services, slots, plane, last_resort)

    weighted, failover, mirroring = (configs[name].get(k) for k in ("weighted", "failover", "mirroring"))
    kind: Weighted | Failover | Mirroring
    if failover is not None:
        kind = Failover(name, child(failover["service"]), child(failover["fallback"]), failover["errors"],
                        slots[name], plane)
    elif mirroring is not None:
        kind = Mirroring(slots[name], child(mirroring["service"]),
                         [(child(m["name"]), m["percent"]) for m in mirroring["mirrors"]], mirroring, plane)
    else:
        kind = Weighted([(c["name"], child(c["name"]), c["weight"]) for c in weighted["services"]],
                        weighted["sticky"])
    service = services[name] = Service(name, [], KindBalancer(kind, last_resort), True, 5.0, 60.0, idx=slots[name],
                                       kind=kind)
    return service


def make_pool_factory(loop: Any) -> Callable[..., UpstreamPool]:
    contexts: dict[tuple[str | None, bool, bool], ssl.SSLContext] = {}

    def context(ca_file: str | None, insecure_skip_verify: bool, h2: bool) -> ssl.SSLContext:
        """One context per setting; ``h2``: offering ALPN h2 (gRPC), which HTTP/1.1 connections must not."""
        key = (ca_file, insecure_skip_verify, h2)
        ctx = contexts.get(key)
        if ctx is None:
            ctx = contexts[key] = tls.client_context(ca_file, insecure_skip_verify, alpn=["h2"] if h2 else None)
        return ctx

    def make_pool(scheme: str, where: transport.Endpoint, ca_file: str | None = None,
                  insecure_skip_verify: bool = False) -> UpstreamPool:
        """A pool; https:// ones verify with the system store or ``ca_file``."""
        if scheme != "https":
            return UpstreamPool(loop, where, None, None, UpstreamProtocol)
        return UpstreamPool(loop, where, context(ca_file, insecure_skip_verify, False), where.address[0],
                            UpstreamProtocol, h2_ssl=context(ca_file, insecure_skip_verify, True))

    return make_pool
