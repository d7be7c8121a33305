"""The master's control plane around reloads: file watching, providers, active health checks and ACME.

``Gateway`` owns the lifecycle; this object owns what changes the config *between* reloads and what runs
once per node beside it:

* ``compile_input(cfg)`` turns a validated static config into what gets compiled: the store providers' last
  good objects (``name@redis``, ``name@docker``, …) and the discovery provider's routers/services merged in (static
  names win; the merge is validated again, and a provider object it rejects is left out and logged), hostname
  servers replaced by their DNS answers, ACME certificates added to ``tls.acme`` entrypoints and the internal
  HTTP-01 router added. The static config itself is never modified (the admin API shows it as written).
* ``reload(reason)`` serializes every reload trigger — SIGHUP, the file watcher, providers, ACME — through
  one lock, so none is dropped while another runs. ``reread=False`` (providers, DNS, ACME) republishes the
  last good static config with fresh provider data instead of re-reading files.
* ``applied(cfg, compiled)`` is called after every successful generation: health checks, watcher,
  discovery, store providers, DNS and ACME are reconfigured to match (tasks of removed things are cancelled and
  awaited).
* ``_offer(provider, partial)`` vets a store provider's fresh read against the live static config and the other
  providers (``providers.provider.merge``): an object that fails keeps its last good version, and a generation
  is published only when what the provider serves changed.
"""

from __future__ import annotations

import asyncio
import copy
from typing import TYPE_CHECKING, Any

from ..shared import log as gwlog
from ..shared.config import GatewayConfig
from ..shared.errors import ConfigError, GatewayError, StateError
from .acme import CHALLENGE_PREFIX, CHALLENGE_ROUTER, AcmeManager, domains_from_routers
from .probes.http import HealthChecker
from .probes.model import ModelProbe
from .probes.outliers import OutlierSweeper
from .providers.consul import ConsulProvider
from .providers.discovery import Discovery, Seed, contribution
from .providers.dns import DnsResolver, names_in
from .providers.docker import DockerProvider
from .providers.etcd import EtcdProvider
from .providers.file import FileWatcher
from .providers.kubernetes import KubernetesProvider
from .providers.kubernetes import merge as merge_kubernetes
from .providers.kv import Partial
from .providers.provider import Provider, merge
from .providers.redis import RedisProvider
from .serving import revisions as serving_revisions
from .serving.controller import Serving

if TYPE_CHECKING:
    from .gateway import Gateway

log = gwlog.get("master.control")

STORES: dict[str, type[Provider]] = {p.name: p for p in (RedisProvider, EtcdProvider, ConsulProvider,
                                                                DockerProvider)}


class ControlPlane:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.static: GatewayConfig | None = None
        self.health: HealthChecker | None = None
        self.agents: ModelProbe | None = None      # agent_health probes (probes/model.py)
        self.outliers: OutlierSweeper | None = None  # success-rate sweeps (probes/outliers.py)
        self.watcher: FileWatcher | None = None
        self.discovery: Discovery | None = None
        self.kubernetes: KubernetesProvider | None = None
        self.dns: DnsResolver | None = None
        self.acme: AcmeManager | None = None
        self.providers: dict[str, Provider] = {}      # the store providers, by name
        self.serving: Serving | None = None              # served services' revisions (master/serving/)
        self._lock: asyncio.Lock | None = None
        self._pending: asyncio.Task | None = None
        self.started = False

    # -- what gets compiled
    def _merge_discovered(self, data: dict[str, Any], seeds: list[Seed], warn: bool) -> bool:
        extra = contribution(seeds, set(data["routers"]), set(data["services"]), warn=warn)
        data["routers"].update(extra["routers"])
        data["services"].update(extra["services"])
        return bool(extra["routers"] or extra["services"])

    def compile_input(self, cfg: GatewayConfig) -> GatewayConfig:
        data = cfg.to_dict()
        if self.providers:
            data, rejected = merge(data, {p.name: p.good for p in self.providers.values()}, cfg.source)
            for provider, objects in rejected.items():
                for (_section, name), why in objects.items():
                    log.warning(f"{provider} provider: '{name}' left out: {why}")
        merged = self.discovery is not None and self._merge_discovered(data, self.discovery.seeds, warn=True)
        if self.kubernetes is not None:
            merged |= merge_kubernetes(data, self.kubernetes.contribution, self.kubernetes.settings["entrypoints"])
        if merged:
            data = GatewayConfig.from_dict(data, source=cfg.source).data   # same validation as files
        problems = serving_revisions.problems(data, cfg.source)
        if problems:
            raise ConfigError(problems)
        serving_revisions.expand(data, self.serving if self.serving is not None else serving_revisions.Idle())
        if self.dns is not None:
            self.dns.expand(data["services"])
        if self.acme is not None:
            certs = self.acme.certificates()
            plain = []
            for name, ep in data["entrypoints"].items():
                tls = ep.get("tls")
                if tls and tls.get("acme"):
                    tls["certificates"] = [*tls.get("certificates", []), *copy.deepcopy(certs)]
                elif not tls and ep.get("protocol", "http") == "http":
                    plain.append(name)
            if self.acme.settings["challenge"] == "http-01" and plain:
                data["routers"][CHALLENGE_ROUTER] = {
                    "rule": f"PathPrefix(`{CHALLENGE_PREFIX}`)", "service": CHALLENGE_ROUTER,
                    "entrypoints": plain, "middlewares": [], "priority": 1 << 30, "tls": None}
        return GatewayConfig(data, cfg.source)

    def _discovery_rejects(self, seeds: list[Seed]) -> str | None:
        if self.static is None:
            return None
        data = self.static.to_dict()
        self._merge_discovered(data, seeds, warn=False)
        try:
            GatewayConfig.from_dict(data, source="<discovery>")
        except ConfigError as e:
            return "; ".join(str(p) for p in e.problems[:3])
        return None

    def _entrypoints(self) -> dict[str, Any]:
        return self.static.data["entrypoints"] if self.static is not None else {}

    def _kubernetes_rejects(self, contribution: dict[str, Any]) -> str | None:
        if self.static is None:
            return None
        data = self.static.to_dict()
        if not merge_kubernetes(data, contribution, self.static.data["providers"]["kubernetes"]["entrypoints"]):
            return None
        try:
            GatewayConfig.from_dict(data, source="<kubernetes>")
        except ConfigError as e:
            return "; ".join(str(p) for p in e.problems[:3])
        return None

    async def _offer(self, provider: Provider, partial: Partial) -> None:
        if self.static is None:
            return
        others = {p.name: p.good for p in self.providers.values() if p is not provider}
        candidate = dict(partial.objects)
        _, rejected = merge(self.static.data, {**others, provider.name: candidate}, f"<{provider.name}>")
        reasons = {**partial.problems, **rejected[provider.name]}
        fallback = {obj: provider.good[obj] for obj in reasons
                    if obj in provider.good and candidate.get(obj) != provider.good[obj]}
        if fallback:        # a bad update of an object keeps its last good version
            candidate = {o: v for o, v in candidate.items() if o not in reasons} | fallback
            _, rejected = merge(self.static.data, {**others, provider.name: candidate}, f"<{provider.name}>")
        accepted = {o: v for o, v in candidate.items() if o not in rejected[provider.name]}
        if provider.accept(partial, accepted, reasons):
            await self._republish(f"{provider.name} provider")

    def poke(self, service: str) -> None:
        """A worker queued the first request for a served revision (``service`` is its load balancer)."""
        if self.serving is not None:
            self.serving.poke(service)

    def boot_state(self) -> dict[str, Any]:
        return {"acme_tokens": dict(self.acme.tokens) if self.acme else {}}

    def _publish_tokens(self, tokens: dict[str, str]) -> None:
        arbiter = self.gateway._arbiter
        if arbiter is not None:
            arbiter.send_all({"op": "acme_tokens", "tokens": tokens})

    # -- lifecycle
    async def prepare(self, cfg: GatewayConfig) -> None:
        """Before the first generation: first DNS answers and the ACME files, so it can be compiled."""
        self.static = cfg
        self._configure_sync(cfg)
        if self.dns is not None:
            await self.dns.refresh()

    async def start(self, cfg: GatewayConfig, compiled: dict[str, Any]) -> None:
        self.started = True
        self.applied(cfg, compiled)

    def _configure_sync(self, cfg: GatewayConfig) -> None:
        providers = cfg.data.get("providers", {})
        dns_settings = providers.get("dns")
        if dns_settings is None:
            if self.dns is not None:
                self._spawn_stop(self.dns)
                self.dns = None
        elif self.dns is None or self.dns.settings != dns_settings:
            if self.dns is not None:
                self._spawn_stop(self.dns)
            self.dns = DnsResolver(dns_settings, self._republish)
        if self.dns is not None:
            self.dns.set_names(names_in(cfg.services))
        acme = cfg.data.get("acme")
        if acme is not None and not acme["domains"]:
            acme = {**acme, "domains": domains_from_routers(cfg.data)}
        if acme is None:
            if self.acme is not None:
                self._spawn_stop(self.acme)
                self.acme = None
        elif self.acme is None or self.acme.settings != acme:
            if self.acme is not None:
                self._spawn_stop(self.acme)
            self.acme = AcmeManager(acme, self._publish_tokens, self._republish)
            self.acme.prepare()

    def applied(self, cfg: GatewayConfig, compiled: dict[str, Any]) -> None:
        """A generation is live: make every component match it."""
        self.static = cfg
        if not self.started:
            return
        plane = self.gateway.plane()
        if plane is not None:
            if self.health is None:
                self.health = HealthChecker(plane)
            self.health.update(compiled)
            if self.agents is None:
                self.agents = ModelProbe(plane)
            self.agents.update(compiled)      # after health checks: the probe owns its backends' flags
            if self.serving is None:
                self.serving = Serving(plane, self._republish)
            self.serving.applied(compiled)
            self.serving.configure(cfg.data)
            if self.outliers is None:
                self.outliers = OutlierSweeper(plane)
            self.outliers.update(compiled)
        self._configure_sync(cfg)
        if self.dns is not None and self.dns.task is None:
            self.dns.start()
        if self.acme is not None and self.acme.task is None:
            self.acme.start()
        # file provider
        file_settings = cfg.data.get("providers", {}).get("file")
        source = cfg.source
        want_watch = bool(file_settings and file_settings.get("watch") and not source.startswith("<"))
        key = (source, file_settings.get("directory") if file_settings else None)
        if self.watcher is not None and (not want_watch or self.watcher.key != FileWatcher(*key, None).key):
            self._spawn_stop(self.watcher)
            self.watcher = None
        if want_watch and self.watcher is None:
            self.watcher = FileWatcher(key[0], key[1], lambda reason: self.reload(reason))
            self.watcher.start()
        # discovery and Kubernetes providers
        providers = cfg.data.get("providers", {})
        self.discovery = self._reconcile(self.discovery, providers.get("discovery"),
                                         lambda s: Discovery(s, self._republish, self._discovery_rejects))
        self.kubernetes = self._reconcile(self.kubernetes, providers.get("kubernetes"),
                                          lambda s: KubernetesProvider(s, self._republish, self._kubernetes_rejects,
                                                                             self._entrypoints))
        # store providers
        for name, kind in STORES.items():
            settings = providers.get(name)
            current = self.providers.get(name)
            if current is not None and current.settings != settings:
                self._spawn_stop(self.providers.pop(name))
                current = None
            if settings is not None and current is None:
                self.providers[name] = kind(settings, self._offer)
                self.providers[name].start()

    def _reconcile(self, current: Any, settings: dict[str, Any] | None, make: Any) -> Any:
        """A polling provider matching ``settings``: kept when they did not change, else stopped and remade."""
        if current is not None and current.settings != settings:
            self._spawn_stop(current)
            current = None
        if settings is not None and current is None:
            current = make(settings)
            current.start()
        return current

    def _spawn_stop(self, component: Any) -> None:
        task = asyncio.get_running_loop().create_task(component.stop())
        self._stopping = getattr(self, "_stopping", set())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def stop(self) -> None:
        self.started = False
        if self._pending is not None:
            self._pending.cancel()
        for component in (self.watcher, self.discovery, self.kubernetes, self.dns, self.acme, self.health, self.agents,
                          self.serving, self.outliers, *self.providers.values()):
            if component is not None:
                await component.stop()
        self.providers = {}
        await asyncio.gather(*getattr(self, "_stopping", set()), return_exceptions=True)
        self.watcher = self.discovery = self.kubernetes = self.dns = self.acme = self.health = self.agents = None
        self.serving = None
        self.outliers = None

    # -- reload triggers
    async def reload(self, reason: str, reread: bool = True) -> GatewayError | None:
        """Run one reload (serialized with every other trigger); errors are logged, kept in health() and
        returned (for the admin API's reload), never raised."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self.gateway.is_running():
                return StateError(f"cannot reload in state '{self.gateway.state()}'")
            log.info(f"reload requested: {reason}")
            try:
                await self.gateway.reload(None if reread else self.static)
            except GatewayError as e:
                return e
        return None

    async def _republish(self, reason: str) -> None:
        """Provider data changed: publish a generation from the last good static config."""
        if self.started:
            await self.reload(reason, reread=False)

    def snapshot(self) -> dict[str, Any]:
        return {
            "health_checks": self.health.snapshot() if self.health else {},
            "agent_health": self.agents.snapshot() if self.agents else {},
            "watch": {"config": self.watcher.config_path, "directory": self.watcher.directory}
            if self.watcher else None,
            "discovery": self.discovery.snapshot() if self.discovery else None,
            "kubernetes": self.kubernetes.snapshot() if self.kubernetes else None,
            "providers": [p.snapshot() for p in self.providers.values()],
            "dns": self.dns.snapshot() if self.dns else None,
            "acme": self.acme.snapshot() if self.acme else None,
            "serving": self.serving.snapshot() if self.serving else {},
        }
