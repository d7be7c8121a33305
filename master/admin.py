"""The admin API, served by the master with aiohttp on its own listener (default 127.0.0.1:9090).

Endpoints (the ``/api/gateway/*`` paths as in the original implementation):
- ``GET /api/gateway/health``: lifecycle state, uptime, generation, workers, last reload result and errors.
  Answers 200 while running or reloading, 503 otherwise, so it doubles as a readiness probe.
- ``GET /api/gateway/config``: the current config as JSON, every secret redacted.
- ``GET /api/gateway/metrics``: Prometheus exposition (text 0.0.4, or OpenMetrics when the Accept header
  asks for it), built from the shared-memory plane by ``metrics.py``.
- ``POST /api/gateway/reload``: the SIGHUP reload (re-read the files, serialized with every other reload),
  answering its result. Always needs the token: without ``admin.token`` it is refused with 403.
- ``POST /api/serving/register`` / ``deregister``: instances of ``http``-executor revisions announcing themselves,
  authenticated by their revision's registration token instead of the admin token (``serving/registration.py``).
- ``GET /api/{entrypoints,routers,services,middlewares}[/{name}]``, ``/api/certificates``, ``/api/providers``:
  read-only views of the live generation (providers' routers and services included) with the node's state
  beside each object: backends' health and in-flight counts and circuit breakers from the plane, active
  checks, certificates and providers' syncs from the control plane.

With ``admin.token`` set (the config refuses a non-loopback address without one), every request needs
``Authorization: Bearer <token>`` (constant-time comparison; 401 otherwise). Every error is a JSON body.

Invariant: every object view goes through ``redact`` on its way out, so a secret in a config value (backend
URL passwords, tokens, basic-auth users, JWT secrets) or in an error message never leaves the master.

It runs in the master so it sees the whole node (all workers, the shared-memory plane) and keeps answering
while workers restart.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import NameOID

from ..shared.config.provider_schema import STORE_PROVIDERS
from ..shared.config.redact import redact
from ..shared.errors import ConfigError, GatewayError, StateError
from ..shared.plane.health import REASONS
from ..shared.plane.traffic import OUTCOMES
from . import metrics, sockets
from .dashboard import routes as dashboard
from .generations import STATEFUL_MIDDLEWARES, backend_key, middleware_key
from .providers.kubernetes.part import PROVIDERS as KUBERNETES_PROVIDERS
from .serving import registration

if TYPE_CHECKING:
    from .gateway import Gateway


def _json(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data, option=orjson.OPT_INDENT_2), status=status,
                        content_type="application/json", headers=headers)


def certificate_file(path: str) -> dict[str, Any]:
    """What a PEM certificate file says about its leaf: the names it is valid for (SANs, else the CN) and
    when it expires; an unreadable file gives its error instead."""
    try:
        with open(path, "rb") as f:
            leaf = x509.load_pem_x509_certificates(f.read())[0]
    except (OSError, ValueError, IndexError) as e:
        return {"names": [], "not_after": None, "error": f"cannot read {path}: {e}"}
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName)
    except x509.ExtensionNotFound:
        names = [str(a.value) for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return {"names": names, "not_after": leaf.not_valid_after_utc.isoformat(), "error": None}


def _mirror_counts(record: dict[str, Any], mirror: int) -> dict[str, Any]:
    """A mirror's node-wide counts: requests chosen for it, then what became of them (``traffic.OUTCOMES``)."""
    counts = record.get("mirrors", {}).get(mirror, {})
    return {"chosen": counts.get("chosen", 0), "outcomes": {o: counts.get(o, 0) for o in OUTCOMES}}


class NodeView:
    """One request's read of the node: the live generation, the plane's state and the control plane's.

    Built per request; each source is read at most once (the plane's sums cost a scan of its tables)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        compiled = gateway.compiled()       # the admin API starts after the first generation is compiled
        self.config: dict[str, Any] = compiled["config"]        # what is served, providers' objects included
        self.slots: dict[str, dict[str, int]] = compiled["slots"]
        self.static = gateway.config().data          # as written: tells file objects from provided ones

    @cached_property
    def control(self) -> dict[str, Any]:
        return self.gateway.control()

    @cached_property
    def plane(self) -> dict[str, Any]:
        """The plane's backends and breakers by slot index, middleware replies by middleware name, and the
        traffic-management records (mirror counts) by service slot index."""
        plane = self.gateway.plane()
        if plane is None:
            return {"backends": {}, "breakers": {}, "replies": {}, "traffic": {}}
        mw_names = {idx: name for name, idx in self.slots.get("middlewares", {}).items()}
        replies: dict[str, dict[str, int]] = {}
        for (idx, code), n in plane.middleware_totals()["answers"].items():
            if idx in mw_names:
                replies.setdefault(mw_names[idx], {})[str(code or "other")] = n
        return {"backends": {b["idx"]: b for b in plane.backend_states()},
                "breakers": {b["idx"]: b for b in plane.breaker_states()}, "replies": replies,
                "traffic": plane.traffic_totals()}

    # -- one object of each kind
    def _provider(self, kind: str, name: str) -> str:
        if name.endswith("@internal"):
            return "internal"
        if name in self.static.get(kind, {}):
            return "file"
        owner = name.rpartition("@")[2]
        return owner if owner in (*STORE_PROVIDERS, *KUBERNETES_PROVIDERS) else "discovery"

    def _routers_on(self, entrypoint: str) -> list[str]:
        return [n for n, r in self.config["routers"].items() if entrypoint in self._router_entrypoints(r)]

    def _router_entrypoints(self, router: dict[str, Any]) -> list[str]:
        """A router without ``entrypoints`` serves every HTTP entrypoint."""
        return router.get("entrypoints") or [n for n, ep in self.config["entrypoints"].items()
                                             if ep.get("protocol", "http") == "http"]

    def entrypoint(self, name: str, ep: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, **ep, "routers": self._routers_on(name)}

    def router(self, name: str, r: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "provider": self._provider("routers", name), **r,
                "entrypoints": self._router_entrypoints(r)}

    def _breakers(self, middleware_names: list[str]) -> list[dict[str, Any]]:
        """Circuit breakers among ``middleware_names``, with their node-wide state from the plane."""
        out = []
        for m in dict.fromkeys(middleware_names):
            params = self.config["middlewares"].get(m)
            if not params or STATEFUL_MIDDLEWARES.get(params["type"]) != "breakers":
                continue
            idx = self.slots.get("breakers", {}).get(middleware_key(m, params))
            live = self.plane["breakers"].get(idx, {})
            out.append({"middleware": m, "state": live.get("state", "closed"), "trips": live.get("trips", 0),
                        "consecutive_failures": live.get("consecutive_failures", 0)})
        return out

    def _server(self, service: str, server: dict[str, Any]) -> dict[str, Any]:
        key = backend_key(service, server["url"])
        live = self.plane["backends"].get(self.slots.get("backends", {}).get(key), {})
        healthy = live.get("healthy", True)
        return {**server, "health": "up" if healthy else "down",
                "inflight": live.get("inflight", 0), "requests": live.get("requests", 0),
                "passive": {"consecutive_failures": live.get("consecutive_failures", 0),
                            "consecutive_gateway_failures": live.get("consecutive_gateway_failures", 0),
                            "down_for_s": round(live.get("passive_down_for_s", 0.0), 3),
                            "ejection_multiplier": live.get("ejection_multiplier", 0),
                            "last_ejection_s": round(live.get("last_ejection_s", 0.0), 3),
                            "ejections": live.get("ejections", dict.fromkeys(REASONS, 0))},
                "health_check": self.control["health_checks"].get(key),
                "agent_health": self.control["agent_health"].get(key)}

    def service(self, name: str, svc: dict[str, Any]) -> dict[str, Any]:
        routers = [n for n, r in self.config["routers"].items() if r["service"] == name]
        middlewares = [m for n in routers for m in self.config["routers"][n]["middlewares"]]
        out = {"name": name, "provider": self._provider("services", name), "health": self._health(name),
               "routers": routers, "circuit_breakers": self._breakers(middlewares)}
        if svc.get("weighted") is not None:
            weighted = svc["weighted"]
            children = [{**child, "health": self._health(child["name"])} for child in weighted["services"]]
            return {**out, "kind": "weighted", "services": children, "sticky": weighted["sticky"]}
        if svc.get("failover") is not None:
            failover = svc["failover"]
            record = self.plane["traffic"].get(self.slots.get("services", {}).get(name), {})
            return {**out, "kind": "failover", "activations": record.get("failover_activations", 0),
                    **{key: {"name": failover[key], "health": self._health(failover[key])}
                       for key in ("service", "fallback")}}
        if svc.get("mirroring") is not None:
            mirroring = svc["mirroring"]
            record = self.plane["traffic"].get(self.slots.get("services", {}).get(name), {})
            mirrors = [{**m, "health": self._health(m["name"]), **_mirror_counts(record, i)}
                       for i, m in enumerate(mirroring["mirrors"])]
            return {**out, "kind": "mirroring", **{k: v for k, v in mirroring.items() if k != "mirrors"},
                    "service": {"name": mirroring["service"], "health": self._health(mirroring["service"])},
                    "requests": record.get("total", 0), "mirrors": mirrors}
        lb = dict(svc["load_balancer"])
        servers = [self._server(name, s) for s in lb.pop("servers")]
        od = lb["outlier_detection"]
        if od is not None:      # panic (worker/services/panic.py): too few healthy servers, traffic spreads or fails
            healthy = sum(1 for s in servers if s["health"] == "up")
            lb["in_panic"] = healthy * 100 < od["healthy_panic_threshold"] * len(servers)
        return {**out, "kind": "load_balancer", **lb, "servers": servers}

    def _health(self, name: str, seen: frozenset[str] = frozenset()) -> str:
        """``up`` while the service can serve: a load balancer with a healthy server, a weighted service with a
        live child of weight > 0, a failover with a live primary or fallback (health propagates up through
        nesting, as the workers pick)."""
        svc = self.config["services"].get(name)
        if svc is None or name in seen:
            return "down"
        if svc.get("weighted") is not None:
            live = any(c["weight"] > 0 and self._health(c["name"], seen | {name}) == "up"
                       for c in svc["weighted"]["services"])
            return "up" if live else "down"
        if svc.get("failover") is not None:
            live = any(self._health(svc["failover"][key], seen | {name}) == "up" for key in ("service", "fallback"))
            return "up" if live else "down"
        if svc.get("mirroring") is not None:         # the primary serves; mirrors never change what clients get
            return self._health(svc["mirroring"]["service"], seen | {name})
        backends = self.slots.get("backends", {})
        healthy = (self.plane["backends"].get(backends.get(backend_key(name, s["url"])), {}).get("healthy", True)
                   for s in svc["load_balancer"]["servers"])
        return "up" if any(healthy) else "down"

    def middleware(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        out = {"name": name, **params,
               "routers": [n for n, r in self.config["routers"].items() if name in r["middlewares"]],
               "replies": self.plane["replies"].get(name, {})}
        breakers = self._breakers([name])
        if breakers:
            out["circuit_breaker"] = {k: v for k, v in breakers[0].items() if k != "middleware"}
        return out

    KINDS: dict[str, Callable[[NodeView, str, dict[str, Any]], dict[str, Any]]] = {
        "entrypoints": entrypoint, "routers": router, "services": service, "middlewares": middleware}

    def items(self, kind: str) -> list[dict[str, Any]]:
        build = self.KINDS[kind]
        return [build(self, name, obj) for name, obj in self.config[kind].items()]

    def item(self, kind: str, name: str) -> dict[str, Any] | None:
        obj = self.config[kind].get(name)
        return None if obj is None else self.KINDS[kind](self, name, obj)

    # -- lists without single-object endpoints
    def certificates(self) -> list[dict[str, Any]]:
        """Certificate files named by the static config (one entry per file, with the entrypoints serving it),
        then ACME certificates with their order status."""
        files: dict[str, list[str]] = {}
        acme_eps = []
        for ep_name, ep in self.static["entrypoints"].items():
            tls = ep.get("tls") or {}
            if tls.get("acme"):
                acme_eps.append(ep_name)
            for path in [tls.get("cert_file"), *(c["cert_file"] for c in tls.get("certificates") or [])]:
                if path:
                    files.setdefault(path, []).append(ep_name)
        out = [{"source": "file", "cert_file": path, **certificate_file(path), "entrypoints": eps}
               for path, eps in files.items()]
        for order in self.control["acme"] or []:
            out.append({"source": "acme", **order, "entrypoints": acme_eps})
        return out

    def providers(self) -> list[dict[str, Any]]:
        """Where the config comes from: the files (when it was read from one), discovery seeds, DNS names, the
        store providers and Kubernetes; each with its last successful sync (unix time) and last error."""
        out = []
        source = self.gateway.config().source
        if not source.startswith("<"):
            sync = self.gateway.file_sync
            out.append({"name": "file", "config": source,
                        "directory": (self.static.get("providers", {}).get("file") or {}).get("directory"),
                        "watch": self.control["watch"] is not None, "last_sync": sync["at"],
                        "last_error": "; ".join(sync["errors"]) if sync["errors"] else None})
        disc = self.control["discovery"]
        if disc is not None:
            oks = [s["last_ok"] for s in disc["seeds"] if s["last_ok"] is not None]
            errors = [f"{s['url']}: {s['last_error']}" for s in disc["seeds"] if s["last_error"]]
            out.append({"name": "discovery", "last_sync": max(oks, default=None), "last_poll": disc["last_sync"],
                        "last_error": "; ".join(errors) or None, "seeds": disc["seeds"]})
        dns = self.control["dns"]
        if dns is not None:
            out.append({"name": "dns", "last_sync": dns["last_sync"],
                        "last_error": "; ".join(f"{n}: {e}" for n, e in dns["errors"].items()) or None,
                        "names": dns["names"]})
        out.extend(self.control["providers"])      # connected, last_sync, last_error, objects, problems
        if self.control["kubernetes"] is not None:
            out.append(self.control["kubernetes"])  # the same keys, and each watch, its errors, the leader
        return out


class AdminServer:
    def __init__(self, gateway: Gateway, host: str, port: int) -> None:
        self.gateway = gateway
        self.host = host
        self.port = port
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/api/gateway/health", self.health)
        app.router.add_get("/api/gateway/config", self.config)
        app.router.add_get("/api/gateway/metrics", self.metrics)
        app.router.add_post("/api/gateway/reload", self.reload)
        kinds = "|".join(NodeView.KINDS)
        app.router.add_get(f"/api/{{kind:{kinds}}}", self.items)
        app.router.add_get(f"/api/{{kind:{kinds}}}/{{name}}", self.item)
        app.router.add_get("/api/certificates", self.certificates)
        app.router.add_get("/api/providers", self.providers)
        app.router.add_get("/api/serving", self.serving)
        registration.add_routes(app)
        self.dashboard = dashboard.Dashboard(gateway)
        self.dashboard.register(app)
        self.runner = web.AppRunner(app, access_log=None)
        self._metrics = metrics.Metrics(gateway)

    def _token(self) -> str | None:
        """Read per request, so a reload that changes the token applies."""
        return (self.gateway.config().data.get("admin") or {}).get("token")

    @web.middleware
    async def _auth(self, request: web.Request, handler) -> web.StreamResponse:  # type: ignore[no-untyped-def]
        """With ``admin.token`` set (required off loopback), every endpoint needs ``Authorization: Bearer
        <token>``, compared in constant time. aiohttp's own errors (404, 405) get JSON bodies too. The dashboard's
        paths decide for themselves (they also take a session cookie) and answer HTML."""
        if dashboard.handles(request.path):
            return await self.dashboard.guard(request, handler)
        token = self._token()
        if token and not registration.handles(request.path):    # those check their revision's own token
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if not (scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())):
                return _json({"error": "Unauthorized"}, 401,
                             headers={"WWW-Authenticate": 'Bearer realm="a3s-gateway admin"'})
        try:
            return await handler(request)
        except web.HTTPClientError as e:
            return _json({"error": e.reason}, e.status, headers={k: v for k, v in e.headers.items()
                                                                  if k.lower() == "allow"})

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as e:
            await self.runner.cleanup()
            raise GatewayError(f"cannot bind admin API on {self.host}:{self.port}: {e.strerror or e} (move it with "
                               "--admin ADDR or admin.address, or turn it off with --admin off)") from e

    def url(self) -> str:
        """Where the API really listens (``http://host:port``)."""
        return sockets.url("http", self.runner.addresses[0])

    async def stop(self) -> None:
        await self.dashboard.stop()
        await self.runner.cleanup()

    async def health(self, request: web.Request) -> web.Response:
        health = self.gateway.health()
        return _json(health, 200 if self.gateway.is_running() else 503)

    async def config(self, request: web.Request) -> web.Response:
        return _json(self.gateway.config().redacted())

    async def metrics(self, request: web.Request) -> web.Response:
        body, content_type = self._metrics.exposition(request.headers.get("Accept"))
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = content_type
        return resp

    async def reload(self, request: web.Request) -> web.Response:
        """Reload over HTTP changes what the node serves, so unlike the reads it is never open: without a
        configured token there is no way to tell an operator from any local process."""
        if not self._token():
            return _json({"error": "reload over HTTP needs admin.token: set it in [admin] and send "
                                   "'Authorization: Bearer <token>' (or reload with SIGHUP)"}, 403)
        error = await self.gateway.request_reload("admin API")
        generation = self.gateway.health()["generation"]
        if error is None:
            return _json({"status": "ok", "generation": generation})
        body: dict[str, Any] = {"status": "error", "error": str(error), "generation": generation}
        status = 409 if isinstance(error, StateError) else 500
        if isinstance(error, ConfigError):
            status = 422
            body["error"] = "invalid config, the old one keeps serving"
            body["problems"] = [{"file": p.file, "key": p.path, "reason": p.message, "suggestion": p.suggestion}
                                for p in error.problems]
        return _json(redact(body), status)

    async def items(self, request: web.Request) -> web.Response:
        return _json(redact(NodeView(self.gateway).items(request.match_info["kind"])))

    async def item(self, request: web.Request) -> web.Response:
        kind, name = request.match_info["kind"], request.match_info["name"]
        found = NodeView(self.gateway).item(kind, name)
        if found is None:
            return _json({"error": f"no {kind[:-1]} named '{name}'"}, 404)
        return _json(redact(found))

    async def certificates(self, request: web.Request) -> web.Response:
        return _json(redact(NodeView(self.gateway).certificates()))

    async def providers(self, request: web.Request) -> web.Response:
        return _json(redact(NodeView(self.gateway).providers()))

    async def serving(self, request: web.Request) -> web.Response:
        """Per served service and revision: instances wanted, starting and ready, in flight and queued, the
        autoscaler's windows, panic state and last decisions with their reasons, and the executor's errors."""
        return _json(redact(self.gateway.serving()))
