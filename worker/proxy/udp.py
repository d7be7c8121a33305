"""UDP entrypoints (``protocol = "udp"``): one session per client address, relayed to a balanced backend.

Routers name the UDP entrypoint in ``entrypoints``; their rule is a TCP-style rule over a request without SNI
(``HostSNI(`*`)`` matches every client, ``ClientIP(...)`` selects by source address). The first datagram from
a new client address opens a *session*: a route and backend are chosen once, and the session gets its own
connected upstream socket, so the backend's replies come back on it and are sent to that client from the
entrypoint socket. Datagrams that arrive while the upstream socket is being made wait (at most
``PENDING_LIMIT``, then are dropped — UDP may drop).

Sessions end after ``udp.idle_timeout`` (default 30 s) without traffic in either direction; at most
``udp.max_sessions`` live per worker, datagrams from new clients beyond that are dropped.

Which worker owns a session: the master binds one ``SO_REUSEPORT`` UDP socket per worker slot and the kernel
picks the socket for each datagram by hashing its 4-tuple, so every datagram of one client address lands on
the same socket — the same slot — for as long as the socket set is unchanged. The master keeps every slot's
socket open even while its worker restarts, so the set never changes while the gateway runs: a client's
datagrams and its session always meet in the same worker (a restarted worker starts with no sessions; the
client's next datagram opens a fresh one).
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, Any

from ...shared import log as gwlog
from .tcp import Match, TcpRoute, build_routes, count_relay

if TYPE_CHECKING:
    from ..process import Worker
    from ..runtime import Backend, Runtime

log = gwlog.get("worker.udp")

PENDING_LIMIT = 64
SWEEP_EVERY = 1.0

Address = Any


class Session:
    """One client address: its backend and connected upstream socket."""

    __slots__ = ("entry", "client", "route", "backend", "transport", "pending", "last_active", "closed",
                 "connected_at", "bytes_in", "bytes_out")

    def __init__(self, entry: UdpEntrypoint, client: Address, route: TcpRoute, backend: Backend) -> None:
        self.entry = entry
        self.client = client
        self.route = route
        self.backend = backend
        self.connected_at = 0.0           # when the upstream socket was ready (0: never)
        self.bytes_in = self.bytes_out = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: list[bytes] | None = []
        self.last_active = entry.loop.time()
        self.closed = False

    async def open(self, timeout: float) -> None:
        loop = self.entry.loop
        try:
            transport, _ = await asyncio.wait_for(loop.create_datagram_endpoint(
                lambda: _Upstream(self), remote_addr=(self.backend.host, self.backend.port)), timeout)
        except (TimeoutError, OSError) as e:
            log.debug(f"udp entrypoint {self.entry.name}: upstream {self.backend.url} unreachable: {e}")
            self.close()
            return
        if self.closed:
            transport.close()
            return
        self.transport = transport  # type: ignore[assignment]
        self.connected_at = loop.time()
        for data in self.pending or ():
            transport.sendto(data)  # type: ignore[attr-defined]
        self.pending = None

    def send(self, data: bytes) -> None:
        self.last_active = self.entry.loop.time()
        self.bytes_in += len(data)
        if self.transport is not None:
            self.transport.sendto(data)
        elif self.pending is not None and len(self.pending) < PENDING_LIMIT:
            self.pending.append(data)

    def reply(self, data: bytes) -> None:
        self.last_active = self.entry.loop.time()
        self.bytes_out += len(data)
        self.entry.send_to_client(data, self.client)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.entry.sessions.get(self.client) is self:
            del self.entry.sessions[self.client]
        self.backend.release()
        if self.transport is not None:
            self.transport.close()
        count_relay(self.entry.worker, self.route, self.backend, self.bytes_in, self.bytes_out, self.connected_at)


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, session: Session) -> None:
        self.session = session

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.session.reply(data)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable and the like: try again later
        log.debug(f"udp upstream {self.session.backend.url}: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.session.close()


class UdpEntrypoint(asyncio.DatagramProtocol):
    """The entrypoint socket of this worker and its sessions."""

    def __init__(self, worker: Worker, spec: dict[str, Any]) -> None:
        self.worker = worker
        self.loop = worker.loop
        self.name = spec["name"]
        udp = spec.get("udp") or {}
        self.idle_timeout = float(udp.get("idle_timeout", 30.0))
        self.max_sessions = int(udp.get("max_sessions", 10000))
        self.sessions: dict[Address, Session] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self._runtime: Runtime | None = None
        self._routes: list[TcpRoute] = []
        self._sweeper: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, worker: Worker, spec: dict[str, Any], sock: socket.socket) -> UdpEntrypoint:
        entry = cls(worker, spec)
        await worker.loop.create_datagram_endpoint(lambda: entry, sock=sock)
        entry._sweeper = worker.loop.create_task(entry._sweep())
        return entry

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        session = self.sessions.get(addr)
        if session is None:
            session = self._open(addr)
            if session is None:
                return
        session.send(data)

    def error_received(self, exc: Exception) -> None:
        log.debug(f"udp entrypoint {self.name}: {exc}")

    def _open(self, addr: Address) -> Session | None:
        if len(self.sessions) >= self.max_sessions:
            return None
        runtime = self.worker.runtime
        if runtime is not self._runtime:
            self._routes = build_routes(runtime, self.name, self.worker.slots.get("routers", {}))
            self._runtime = runtime
        req = Match("", addr[0], [])
        route = next((r for r in self._routes if r.rule.matches(req)), None)
        if route is None:
            return None
        backend = route.service.balancer.pick()
        if backend is None:
            count_relay(self.worker, route, None, 0, 0, 0.0)
            return None
        backend.acquire()
        session = self.sessions[addr] = Session(self, addr, route, backend)
        self.loop.create_task(session.open(route.service.connect_timeout))  # type: ignore[union-attr]
        return session

    def send_to_client(self, data: bytes, addr: Address) -> None:
        if self.transport is not None:
            self.transport.sendto(data, addr)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(min(SWEEP_EVERY, self.idle_timeout / 4))
            cutoff = self.loop.time() - self.idle_timeout
            for session in [s for s in self.sessions.values() if s.last_active < cutoff]:
                session.close()

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for session in list(self.sessions.values()):
            session.close()
        if self.transport is not None:
            self.transport.close()
