"""The Docker provider: routers, services and middlewares from container labels, over the Engine API (its unix
socket, or ``tcp://`` with TLS client certificates as ``dockerd --tlsverify`` wants).

Labels spell kv.py's layout with dots under a prefix (``a3s.http.routers.<r>.rule``; ``traefik.`` works too, so
existing containers need no change; ``a3s.`` wins where both say the same key). Besides the layout:

* ``<prefix>.enable`` (default ``exposed_by_default``) and ``constraints`` (``label=value`` / ``label!=value``, all
  must hold) pick the containers; ``<prefix>.docker.network`` (or ``network``) the network whose address is used;
  a container on the host network is reached at ``host_address``.
* ``<prefix>.http.services.<s>.loadbalancer.server.port`` / ``.scheme`` give the service's one server, the
  container itself (default: its lowest exposed port, ``http``). Without service labels a container has one
  service named after it; without router labels one router, ``default_rule`` with ``{name}`` the container's
  name made DNS-safe; a router without ``service`` gets the container's only service.
* Containers that publish the same service name are its replicas: their servers are merged.

Health (traefik/traefik#4153): a container that is not running, or whose health check says ``starting`` or
``unhealthy``, keeps its routers and services but takes no traffic. When none of a service's containers can, its
servers stay listed with weight 0 under the ``weighted`` strategy, so its routers answer 503 (not 404) until the
container is removed. A restarted container (a new id, traefik/traefik#3780) is just another read: every change
reads all containers again (``GET /containers/json?all=1``, then an inspect of each), never patches by event.
Events (``GET /events``, container ``start``/``die``/``stop``/``destroy``/``health_status``/``pause``/``unpause``/
``rename``) only say when to read; health checks' ``exec_*`` events are ignored.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import aiohttp

from .. import docker_engine
from ..docker_engine import API, CONTAINER_EVENTS
from .kv import Obj, Partial, decode
from .provider import Provider

_SERVER_KEY = re.compile(r"(http|tcp|udp)\.services\.([^.]+)\.load_?balancer\.server\.(port|scheme)", re.I)
_INSPECTS_AT_ONCE = 16


def dns_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]+", "-", name).strip("-") or "container"


class DockerProvider(Provider):
    name = "docker"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session: aiohttp.ClientSession | None = None
        self.since = 0

    async def connect(self) -> None:
        self.session = docker_engine.session(self.settings["endpoint"], self.settings["tls"])
        self.since = int(time.time()) - 1          # events from before the first read too: none falls between
        async with self.session.get(f"/{API}/version", timeout=aiohttp.ClientTimeout(total=10)) as r:
            r.raise_for_status()

    async def _get(self, path: str, **params: str) -> Any:
        assert self.session is not None
        async with self.session.get(f"/{API}{path}", params=params, timeout=aiohttp.ClientTimeout(total=30)) as r:
            if r.status == 404:
                return None                     # removed between the list and its inspect
            r.raise_for_status()
            return await r.json()

    async def read(self) -> Partial:
        listing = await self._get("/containers/json", all="1")
        gate = asyncio.Semaphore(_INSPECTS_AT_ONCE)

        async def inspect(cid: str) -> Any:
            async with gate:
                return await self._get(f"/containers/{cid}/json")

        details = await asyncio.gather(*(inspect(c["Id"]) for c in listing))
        containers = sorted((d for d in details if d), key=lambda d: d["Name"])
        return self.combine([self.container(d) for d in containers])

    async def watch(self) -> None:
        assert self.session is not None
        filters = json.dumps({"type": ["container"]})
        async with self.session.get(f"/{API}/events", params={"since": str(self.since), "filters": filters},
                                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)) as r:
            r.raise_for_status()
            async for line in r.content:
                try:
                    action = json.loads(line).get("Action", "")
                except ValueError:
                    continue                    # a torn line: the next read sees the state anyway
                if action.partition(":")[0] in CONTAINER_EVENTS:
                    self.changed()

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    # -- labels → objects
    def _labels(self, raw: dict[str, str]) -> dict[str, str]:
        """The labels under any accepted prefix, prefix taken off; the first prefix listed wins."""
        out: dict[str, str] = {}
        for prefix in reversed(self.settings["label_prefixes"]):
            head = prefix + "."
            out.update({k[len(head):]: v for k, v in raw.items() if k.startswith(head)})
        return out

    def _wanted(self, raw: dict[str, str], labels: dict[str, str]) -> bool:
        enable = labels.get("enable", "").strip().lower()
        if (enable == "false") if enable else not self.settings["exposed_by_default"]:
            return False
        for constraint in self.settings["constraints"]:
            key, negated, value = re.match(r"(.*?)(!?)=(.*)", constraint).groups()  # type: ignore[union-attr]
            if (raw.get(key) == value) == bool(negated):
                return False
        return True

    def _address(self, detail: dict[str, Any], labels: dict[str, str]) -> str:
        if detail["HostConfig"].get("NetworkMode") == "host":
            return self.settings["host_address"]
        networks = (detail.get("NetworkSettings") or {}).get("Networks") or {}
        wanted = labels.get("docker.network") or self.settings["network"]
        chosen = networks.get(wanted) if wanted else next((networks[n] for n in sorted(networks)), None)
        return (chosen or {}).get("IPAddress") or self.settings["host_address"]  # stopped: takes no traffic

    def container(self, detail: dict[str, Any]) -> tuple[Partial, bool]:
        """One container's objects, and whether it may take traffic now."""
        name = detail["Name"].lstrip("/")
        raw = (detail.get("Config") or {}).get("Labels") or {}
        labels = self._labels(raw)
        if not self._wanted(raw, labels):
            return Partial(), False
        state = detail.get("State") or {}
        health = (state.get("Health") or {}).get("Status")
        serving = bool(state.get("Running")) and not state.get("Paused") and health in (None, "healthy", "none")
        layout = {k: v for k, v in labels.items() if k.split(".", 1)[0].lower() in ("http", "tcp", "udp")}
        servers: dict[tuple[str, str], dict[str, str]] = {}
        for key in list(layout):
            m = _SERVER_KEY.fullmatch(key)
            if m:
                servers.setdefault((m[1].lower(), m[2]), {})[m[3].lower()] = layout.pop(key)
        for parts in (k.split(".") for k in layout):
            if len(parts) > 3 and parts[1].lower() == "services":
                servers.setdefault((parts[0].lower(), parts[2]), {})
        own = dns_safe(name)
        if not servers:
            servers[("http", own)] = {}
        if not any(k.lower().startswith(("http.routers.", "tcp.routers.", "udp.routers.")) for k in layout):
            layout[f"http.routers.{own}.rule"] = self.settings["default_rule"].replace("{name}", own)
        routers = {(parts[0], parts[2]) for parts in (k.split(".") for k in layout)
                   if len(parts) > 3 and parts[1].lower() == "routers"}
        for protocol, router in routers:
            if f"{protocol}.routers.{router}.service" not in layout and len(servers) == 1:
                layout[f"{protocol}.routers.{router}.service"] = next(iter(servers))[1]
        problems: dict[Obj, str] = {}
        for (protocol, service), given in servers.items():
            port = given.get("port") or _lowest_port(detail)
            if port is None:
                problems[("services", f"{service}@docker")] = (
                    f"no port: label {protocol}.services.{service}.loadbalancer.server.port or EXPOSE one")
                continue
            scheme = given.get("scheme") or ("tcp" if protocol == "tcp" else "udp" if protocol == "udp" else "http")
            layout[f"{protocol}.services.{service}.loadbalancer.servers.0.url"] = (
                f"{scheme}://{self._address(detail, labels)}:{port}")
        part = decode({f"a3s.{k}": v for k, v in layout.items()}, "a3s", self.name, sep=".",
                      origin=f"container '{name}'")
        part.problems.update(problems)
        for obj in problems:
            part.origins.setdefault(obj, f"container '{name}'")
        return part, serving

    def combine(self, containers: list[tuple[Partial, bool]]) -> Partial:
        """One partial for all containers: replicas' servers merged, the servers of containers that cannot take
        traffic left out (or all kept at weight 0 when no container of the service can)."""
        out = Partial()
        servers: dict[Obj, list[tuple[dict[str, Any], bool]]] = {}
        for part, serving in containers:
            for obj, value in part.objects.items():
                if obj[0] == "services" and isinstance(value, dict):
                    lb = value.get("load_balancer") or {}
                    servers.setdefault(obj, []).extend((s, serving) for s in lb.get("servers") or [])
                    value = {**value, "load_balancer": {**lb, "servers": []}}
                if obj in out.objects and out.objects[obj] != value:
                    out.unplaced.append(f"{part.origins[obj]}: defines {obj[0][:-1]} '{obj[1]}' differently from "
                                        f"{out.origins[obj]}, whose definition is used")
                    continue
                out.objects.setdefault(obj, value)
                out.origins.setdefault(obj, part.origins[obj])
            out.problems.update({o: why for o, why in part.problems.items() if o not in out.objects})
            out.origins.update({o: part.origins[o] for o in part.problems if o not in out.origins})
            out.unplaced.extend(part.unplaced)
        for obj, listed in servers.items():
            lb = out.objects[obj]["load_balancer"]
            live = [s for s, serving in listed if serving]
            if live:
                lb["servers"] = live
            else:
                lb["servers"] = [{**s, "weight": 0} for s, _ in listed]
                lb["strategy"] = "weighted"
        return out


def _lowest_port(detail: dict[str, Any]) -> str | None:
    exposed = (detail.get("Config") or {}).get("ExposedPorts") or {}
    ports = sorted(int(p.split("/")[0]) for p in exposed if p.split("/")[0].isdigit())
    return str(ports[0]) if ports else None
