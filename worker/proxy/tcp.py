"""TCP entrypoints (``protocol = "tcp"``): routing by SNI / client IP, TLS passthrough or termination, relay.

Routers belong to a TCP entrypoint when they name it in ``entrypoints`` (their rules are then TCP rules:
``HostSNI``, ``HostSNIRegexp``, ``ClientIP``, ``ALPN``). A router's ``tls`` decides what happens to a match:
absent → plain TCP (only connections that are *not* TLS match it, ``HostSNI(`*`)`` being the usual rule);
``{passthrough = true}`` → the TLS bytes, ClientHello included, are relayed untouched to the backend, which
terminates; ``{}`` → the gateway terminates TLS with the entrypoint's ``tls`` certificates (chosen by SNI as on
HTTP entrypoints) and relays the plaintext. Routers are tried by priority, as HTTP routers are.

Per connection: the TCP filter first (``tcp_allowed_ips``; ``max_connections``, enforced per worker), then —
only when the entrypoint has a TLS router — the first bytes are *peeked* (``MSG_PEEK``, they stay in the
socket) until a ClientHello is complete (``HELLO_TIMEOUT``), then the route's service picks a backend with
its balancer, the backend connection is made, and only then is the client socket handed to the event loop
(with TLS when terminating), so the backend sees every byte the client sent. Both connections then form a
``Tunnel`` (half-close, back-pressure, idle timeout).

Routes are rebuilt lazily when the worker's runtime generation changes; connections keep the route they got.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...shared import log as gwlog
from ...shared.ipmatch import IPSet
from ...shared.rules import Rule, parse_rule
from .. import proxy_protocol
from ..peek import peek_until
from ..retire import accept_queued
from ..tls import CertStore
from . import clienthello
from .tunnel import Tunnel

if TYPE_CHECKING:
    from ..process import Worker
    from ..runtime import Backend, Runtime, Service

log = gwlog.get("worker.tcp")

HELLO_TIMEOUT = 5.0
PEEK_BYTES = clienthello.MAX_HELLO + 1024
TLS_HANDSHAKE_TIMEOUT = 10.0


@dataclass
class TcpRoute:
    name: str
    rule: Rule
    priority: int
    service: Service
    tls: str                                   # "plain" | "passthrough" | "terminate"
    idx: int                                   # the router's plane index (its connection counters)


@dataclass
class Match:
    """What TCP rules read (see ``shared/rules/matchers.py``)."""

    sni: str
    client_ip: str
    alpn: list[str]


def build_routes(runtime: Runtime, entrypoint: str, router_slots: dict[str, int]) -> list[TcpRoute]:
    """The routers of a TCP or UDP entrypoint, by priority (``router_slots``: the generation's plane indices)."""
    routes = []
    for name, r in runtime.config.get("routers", {}).items():
        if entrypoint not in r.get("entrypoints", []):
            continue
        tls = r.get("tls")
        mode = "plain" if tls is None else ("passthrough" if tls.get("passthrough") else "terminate")
        routes.append(TcpRoute(name, parse_rule(r["rule"], kind="tcp"), r["priority"],
                               runtime.services[r["service"]], mode, router_slots.get(name, -1)))
    routes.sort(key=lambda r: (-r.priority, r.name))
    return routes


def count_relay(worker: Worker, route: TcpRoute, backend: Backend | None, bytes_in: int, bytes_out: int,
                connected_at: float) -> None:
    """Count one ended TCP connection or UDP session on the plane for its router, service and backend
    (``connected_at`` 0: no backend was reached, a failure)."""
    seconds = worker.loop.time() - connected_at if connected_at else 0.0
    worker.plane.relay(route.idx, route.service.idx, backend.idx if backend is not None else -1, bytes_in, bytes_out,
                       seconds, connected_at > 0)


class TcpEntrypoint:
    """Accepts on one TCP entrypoint socket of this worker and proxies every connection."""

    def __init__(self, worker: Worker, spec: dict[str, Any], sock: socket.socket) -> None:
        self.worker = worker
        self.name = spec["name"]
        self.sock = sock
        self.store = CertStore(self.name, spec["tls"], None) if spec.get("tls") else None
        self.max_connections = spec.get("max_connections") or 0
        self.allowed = [ipaddress.ip_network(n, strict=False) for n in spec.get("tcp_allowed_ips") or []]
        proxy = spec.get("proxy_protocol")
        self.proxy_trusted = IPSet(proxy["trusted_ips"]) if proxy else None   # peers whose PROXY header counts
        self.active = 0
        self._runtime: Runtime | None = None
        self._routes: list[TcpRoute] = []
        self._peek = False
        self.task = worker.loop.create_task(self._accept_loop())

    def close(self) -> None:
        self.task.cancel()
        self.sock.close()

    def routes(self) -> list[TcpRoute]:
        runtime = self.worker.runtime
        if runtime is not self._runtime:
            self._routes = build_routes(runtime, self.name, self.worker.slots.get("routers", {}))
            self._peek = any(r.tls != "plain" for r in self._routes)
            self._runtime = runtime
        return self._routes

    async def _accept_loop(self) -> None:
        loop = self.worker.loop
        while True:
            try:
                conn, addr = await loop.sock_accept(self.sock)
            except asyncio.CancelledError:
                raise
            except OSError as e:
                log.warning(f"tcp entrypoint {self.name}: accept failed: {e}")
                await asyncio.sleep(0.05)
                continue
            self._take(conn, addr)

    def accept_queued(self) -> None:
        """The entrypoint is being removed: relay the connections still waiting in its accept queue."""
        for conn, addr in accept_queued(self.sock):
            self._take(conn, addr)

    def _take(self, conn: socket.socket, addr: tuple[str, int]) -> None:
        if not self._admit(addr[0]):
            conn.close()
            return
        conn.setblocking(False)
        self.active += 1
        self.worker.loop.create_task(self._serve(conn, addr))

    def _admit(self, ip: str) -> bool:
        if self.max_connections and self.active >= self.max_connections:
            return False
        if self.allowed:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                return False
            if addr.version == 6 and addr.ipv4_mapped is not None:  # type: ignore[union-attr]
                addr = addr.ipv4_mapped  # type: ignore[union-attr]
            return any(addr in net for net in self.allowed)
        return True

    async def _serve(self, conn: socket.socket, client: tuple[str, int]) -> None:
        client_ip = client[0]
        backend = route = None
        connected_at = 0.0       # when the backend connection was made (0: none was)

        def ended(tunnel: Tunnel) -> None:
            self.active -= 1
            if backend is not None:
                backend.release()
            if route is not None:
                count_relay(self.worker, route, backend, tunnel.bytes_from_a, tunnel.bytes - tunnel.bytes_from_a,
                            connected_at)

        tunnel = Tunnel(self.worker, self.name, ended)
        try:
            if self.proxy_trusted is not None and client_ip in self.proxy_trusted:
                client = await proxy_protocol.read(self.worker.loop, conn, HELLO_TIMEOUT) or client
                client_ip = client[0]
            routes = self.routes()
            hello: clienthello.Hello | None = None
            if self._peek:
                peeked = await self._peek_hello(conn)
                hello = peeked if isinstance(peeked, clienthello.Hello) else None
            route = self._match(routes, hello, client_ip)
            if route is not None and not (route.tls == "terminate" and self.store is None):
                backend = route.service.balancer.pick()
            if backend is None:
                raise ConnectionError("no route or no healthy backend")
            backend.acquire()
            loop = self.worker.loop
            await asyncio.wait_for(backend.pool.open(lambda: tunnel.b),
                                   route.service.connect_timeout)  # type: ignore[union-attr]
            connected_at = loop.time()
            if backend.pool.proxy_version:
                version = backend.pool.proxy_version
                tunnel.b.transport.write(proxy_protocol.header(version, client, conn.getsockname()))
            ssl_args: dict[str, Any] = {}
            if route.tls == "terminate":  # type: ignore[union-attr]
                ssl_args = {"ssl": self.store.front, "ssl_handshake_timeout": TLS_HANDSHAKE_TIMEOUT}  # type: ignore[union-attr]
            await loop.connect_accepted_socket(lambda: tunnel.a, conn, **ssl_args)
            tunnel.register()
        except (TimeoutError, OSError, ConnectionError, proxy_protocol.HeaderError) as e:
            log.debug(f"tcp entrypoint {self.name}: connection from {client_ip} dropped: {e}")
            conn.close()
            tunnel.close(abort=True)         # runs ``ended`` once

    @staticmethod
    def _match(routes: list[TcpRoute], hello: clienthello.Hello | None, client_ip: str) -> TcpRoute | None:
        req = Match(hello.sni if hello else "", client_ip, hello.alpn if hello else [])
        for route in routes:
            if (route.tls != "plain") == (hello is not None) and route.rule.matches(req):
                return route
        return None

    async def _peek_hello(self, conn: socket.socket) -> clienthello.Hello | Any:
        """Wait (up to HELLO_TIMEOUT) until the peeked bytes are a complete ClientHello or clearly not TLS."""
        return await peek_until(self.worker.loop, conn, PEEK_BYTES, HELLO_TIMEOUT, clienthello.parse,
                                clienthello.NEED_MORE, "client closed before sending anything")

