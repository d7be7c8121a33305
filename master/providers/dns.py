"""The DNS provider: services whose servers are hostnames are resolved in the master, once per node.

With ``[providers.dns]`` set, every server URL whose host is a name (not an IP literal) is resolved at start
and every ``refresh_secs``:

* ``http://api.internal:8080`` → one server per A/AAAA address, keeping the port and weight;
* ``http://_api._tcp.example.test`` (a name starting with ``_``) → an SRV lookup; each record's target is
  resolved to addresses and gives the port (and the weight, SRV weight × the server's weight).

The expanded servers are what the workers see (each address is its own backend with its own health and
in-flight count). When the set of addresses changes the control plane publishes a new generation — the
config file is not re-read and nothing is reloaded by hand. A failed lookup keeps the last good set (and is
logged); a name that never resolved stays as written, so the workers still try it at connect time.

``nameservers`` (``host:port``) sends every query to those servers with dnspython; without them A/AAAA use
the system resolver (``getaddrinfo``, so ``/etc/hosts`` counts) and SRV uses dnspython with the system's
``resolv.conf``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import dns.asyncresolver
import dns.exception
import dns.rdatatype
import dns.resolver

from ...shared import log as gwlog
from ...shared.config.gateway_schema import load_balancers
from ...shared.config.schema import parse_address
from ...shared.transport import LOCAL_SCHEMES
from ..background import Background

log = gwlog.get("master.dns")

Target = tuple[str, int, int]        # (address, port, weight)


def is_name(host: str | None) -> bool:
    if not host:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False


def server_host(url: str) -> str | None:
    """The host a server URL names; None for unix socket and vsock servers (a vsock CID is not a name)."""
    return None if url.partition("://")[0].lower() in LOCAL_SCHEMES else urlsplit(url).hostname


def names_in(services: dict[str, Any]) -> set[str]:
    """Every hostname used by a server URL."""
    out = set()
    for _name, lb in load_balancers(services):
        for s in lb["servers"]:
            host = server_host(s["url"])
            if is_name(host):
                out.add(host)
    return out


class DnsResolver(Background):
    def __init__(self, settings: dict[str, Any], on_change: Callable[[str], Awaitable[None]]) -> None:
        self.settings = settings
        self.on_change = on_change
        self.names: set[str] = set()
        self.results: dict[str, list[Target]] = {}     # name -> last good answer
        self.errors: dict[str, str] = {}
        self.last_sync: float | None = None
        self.resolver = dns.asyncresolver.Resolver(configure=not settings["nameservers"])
        if settings["nameservers"]:
            addrs = [parse_address(ns) for ns in settings["nameservers"]]
            self.resolver.nameservers = [host for host, _port in addrs]
            self.resolver.port = addrs[0][1]
        self.resolver.lifetime = settings["timeout"]
        self.resolver.timeout = settings["timeout"]

    def set_names(self, names: set[str]) -> None:
        self.names = names
        for gone in set(self.results) - names:
            del self.results[gone]

    async def refresh(self) -> bool:
        """Resolve every name once; True when some name's address set changed."""
        names = sorted(self.names)
        answers = await asyncio.gather(*(self._resolve(n) for n in names), return_exceptions=True)
        changed = False
        for name, answer in zip(names, answers):
            if isinstance(answer, BaseException) or not answer:
                why = "no addresses" if not isinstance(answer, BaseException) else f"{type(answer).__name__}: {answer}"
                if self.errors.get(name) != why:
                    log.warning(f"cannot resolve '{name}', keeping the last good addresses: {why}")
                self.errors[name] = why
                continue
            self.errors.pop(name, None)
            answer = sorted(set(answer))
            if self.results.get(name) != answer:
                if name in self.results:
                    log.info("DNS answer changed", extra={"fields": {"name": name, "targets": answer}})
                self.results[name] = answer
                changed = True
        self.last_sync = time.time()
        return changed

    async def _addresses(self, name: str) -> list[str]:
        if self.settings["nameservers"]:
            out: list[str] = []
            for rdtype in ("A", "AAAA"):
                try:
                    answer = await self.resolver.resolve(name, rdtype)
                except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
                    continue
                out += [r.address for r in answer]
            return out
        infos = await asyncio.get_running_loop().getaddrinfo(name, None, type=socket.SOCK_STREAM)
        return [info[4][0] for info in infos]

    async def _resolve(self, name: str) -> list[Target]:
        """[(address, port, weight)]; port 0 = keep the URL's port, weight 0 = keep the server's weight."""
        if not name.startswith("_"):
            return [(a, 0, 0) for a in await self._addresses(name)]
        answer = await self.resolver.resolve(name, "SRV")
        out: list[Target] = []
        for r in answer:
            target = r.target.to_text().rstrip(".")
            for a in await self._addresses(target):
                out.append((a, r.port, max(r.weight, 1)))
        return out

    def expand(self, services: dict[str, Any]) -> None:
        """Replace hostname servers by their resolved addresses, in place (normalized config data)."""
        for _name, lb in load_balancers(services):
            servers = []
            for s in lb["servers"]:
                host = server_host(s["url"])
                targets = self.results.get(host or "")
                if not is_name(host) or not targets:
                    servers.append(s)
                    continue
                parts = urlsplit(s["url"])
                for addr, port, weight in targets:
                    host = f"[{addr}]" if ":" in addr else addr
                    port = port or parts.port
                    netloc = f"{host}:{port}" if port else host
                    servers.append({**s, "url": urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")),
                                    "weight": s["weight"] * weight if weight else s["weight"]})
            # the same address reached through two names is one backend
            seen: set[str] = set()
            lb["servers"] = [s for s in servers if not (s["url"] in seen or seen.add(s["url"]))]

    task_name = "dns"

    def snapshot(self) -> dict[str, Any]:
        return {"last_sync": self.last_sync, "names": {n: self.results.get(n) for n in sorted(self.names)},
                "errors": dict(self.errors)}

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings["refresh_secs"])
            try:
                if await self.refresh():
                    await self.on_change("dns")
            except Exception as e:  # noqa: BLE001 — a failed refresh keeps the last good set
                log.error(f"DNS refresh failed: {e}")
