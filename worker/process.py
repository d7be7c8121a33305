"""A worker process: one uvloop event loop serving every entrypoint socket of its slot.

Lifecycle: boot message from the master (sockets, entrypoints, first generation) → servers start on the
inherited listening sockets → ``ready`` → serve; a ``generation`` message swaps the runtime between requests
and is answered ``loaded`` or ``load_failed``; ``stop`` (or SIGTERM, or the master vanishing) drains: stop
accepting, close idle keep-alive connections, let in-flight exchanges finish, exit when none is left or the
graceful timeout passes.

The listening sockets belong to the master; closing our copy never drops connections queued in them.
A periodic sweep (every ``SWEEP_INTERVAL``) keeps the coarse clock, answers upstream response-header timeouts
with 504, closes idle keep-alive clients and stale pooled connections, and writes the heartbeat (on the
shared-memory plane) the master uses to detect a stuck event loop — it runs on the loop, so a blocked loop
stops beating.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import time
from typing import Any

import uvloop

from ..shared import log as gwlog
from ..shared.channel import Channel
from ..shared.compiled import spec_lids
from ..shared.ipmatch import IPSet
from ..shared.plane import Plane
from . import exchange, http3, limits, middlewares, proxy_protocol, runtime, tls
from .handover import Handover
from .observability import Observability
from .proxy import tcp, udp
from .retire import accept_queued, unread_bytes
from .runtime import PoolKey, Runtime
from .services.upstream_pool import UpstreamPool
from .upstream.http1 import UpstreamProtocol

SWEEP_INTERVAL = 0.5
CLIENT_IDLE_TIMEOUT = 60.0
EXIT_BOOT_ERROR = 3
CLOSE_TIMEOUT = 2.0      # seconds the exit waits for middlewares' and the exporter's HTTP/Redis clients to close

log = gwlog.get("worker")


class Worker:
    def __init__(self, slot: int, loop: asyncio.AbstractEventLoop, channel: Channel) -> None:
        self.slot = slot
        self.loop = loop
        self.channel = channel
        self.runtime: Runtime = None  # type: ignore[assignment]
        self.pools: dict[PoolKey, UpstreamPool] = {}
        self.make_pool = runtime.make_pool_factory(loop)
        self.connections: set[limits.Connection] = limits.ConnectionSet()   # counted per entrypoint
        self.limits = limits.Limits()                                    # [limits] of the current generation
        self.waiting: set[UpstreamProtocol] = set()
        self.servers: list[asyncio.AbstractServer] = []
        self.draining = False
        self.now = time.monotonic()
        self.stopped = asyncio.Event()
        self.graceful_timeout = 30.0
        self.plane: Plane = None  # type: ignore[assignment]
        self.slots: dict[str, dict[str, int]] = {}
        self.build_middlewares = middlewares.Builder(self)
        self.cert_stores: dict[str, tls.CertStore] = {}   # TLS entrypoints: certificates chosen by SNI
        self.obs = Observability(self)                    # metrics observations, access log, tracing
        # Entrypoint servers. ``listen_socks`` keeps one copy of each listening socket this worker serves
        # (by listener id, see master/sockets.py), so a server can be rebuilt on the same socket without the
        # master's help; ``listening[name]`` is (spec, server) of each entrypoint being served.
        self.listen_socks: dict[int, socket.socket] = {}
        self.listening: dict[str, tuple[dict[str, Any], asyncio.AbstractServer]] = {}
        self.retired: set[str] = set()      # removed entrypoints whose connections are not all closed yet
        self.fdsock: socket.socket | None = None
        self.acme_tokens: dict[str, str] = {}            # HTTP-01 token -> key authorization (from the master)
        self.alt_svc: dict[str, bytes] = {}              # entrypoint -> Alt-Svc of its HTTP/3 side (http3/)

    def load(self, compiled: dict[str, Any]) -> None:
        self.slots = compiled["slots"]       # plane indices of this generation (middleware builders read them)
        self.limits = limits.Limits(compiled["config"].get("limits"))
        self.runtime = runtime.build(compiled, self.pools, self.make_pool, self.plane, self, self.build_middlewares)
        self.obs.configure(compiled["config"])
        self.plane.report_generation(self.runtime.generation)
        for store in self.cert_stores.values():   # a reload (SIGHUP) re-reads certificate files too
            store.reload(only_if_changed=False)

    async def start_servers(self, listeners: list[dict[str, Any]], fds: dict[str, int]) -> None:
        """Boot: serve every entrypoint on the sockets inherited from the master (``fds``: lid -> fd)."""
        for lid, fd in fds.items():
            self.listen_socks[int(lid)] = socket.socket(fileno=fd)
        await self.apply_listeners(listeners)

    async def _serve(self, ep: dict[str, Any]) -> asyncio.AbstractServer:
        sock = self.listen_socks[ep["lid"]].dup()
        sock.setblocking(False)
        if ep.get("protocol") in ("tcp", "udp"):
            return await self._serve_proxy(ep, sock)  # type: ignore[return-value]
        store = None
        if ep.get("tls"):
            store = tls.CertStore(ep["name"], ep["tls"], tls.HTTP_ALPN)
        factory = _client_factory(self, ep["name"], b"https" if store else b"http", ep["port"], store is not None)
        try:
            if ep.get("proxy_protocol"):       # a trusted peer's header is read before anything else
                server = proxy_protocol.ProxyProtocolListener(
                    self.loop, ep["name"], sock, IPSet(ep["proxy_protocol"]["trusted_ips"]), factory,
                    store.front if store else None, lambda: self.limits.header_timeout)
            else:
                server = await self.loop.create_server(factory, sock=sock, backlog=4096,
                                                       ssl=store.front if store else None)
        except BaseException:
            sock.close()
            raise
        if store is not None:
            self.cert_stores[ep["name"]] = store
        if ep.get("http3"):
            return await self._serve_http3(ep, server, store)  # type: ignore[arg-type]
        return server

    async def _serve_http3(self, ep: dict[str, Any], tcp_server: asyncio.AbstractServer,
                           store: tls.CertStore) -> http3.WithHttp3:
        """The entrypoint's HTTP/3 side, on its slot's UDP socket (aioquic is imported only here)."""
        from .http3.server import H3Entrypoint

        sock = self.listen_socks[ep["h3_lid"]].dup()
        sock.setblocking(False)
        try:
            h3 = await H3Entrypoint.start(self, ep, sock, store)
        except BaseException:
            sock.close()
            tcp_server.close()
            raise
        return http3.WithHttp3(tcp_server, h3)

    async def _serve_proxy(self, ep: dict[str, Any], sock: socket.socket) -> tcp.TcpEntrypoint | udp.UdpEntrypoint:
        """TCP and UDP entrypoints (``proxy/tcp.py``, ``proxy/udp.py``); both stop accepting on ``close()``."""
        if ep["protocol"] == "udp":
            return await udp.UdpEntrypoint.start(self, ep, sock)
        entry = tcp.TcpEntrypoint(self, ep, sock)
        if entry.store is not None:
            self.cert_stores[ep["name"]] = entry.store
        return entry

    async def apply_listeners(self, specs: list[dict[str, Any]]) -> None:
        """Serve exactly the entrypoints in ``specs``: start servers for new or changed ones first (all or
        nothing), then stop the servers of removed or replaced ones. A stopped server only stops accepting:
        its connections finish what they are doing (idle keep-alive ones of a removed entrypoint are closed).
        """
        wanted = {ep["name"]: ep for ep in specs}
        started: dict[str, tuple[dict[str, Any], asyncio.AbstractServer]] = {}
        try:
            for name, ep in wanted.items():
                current = self.listening.get(name)
                if current is None or current[0] != ep:
                    started[name] = (ep, await self._serve(ep))
        except BaseException:
            for _ep, server in started.values():
                server.close()
            raise
        gone = [n for n in self.listening if n not in wanted]
        used = {lid for ep in specs for lid in spec_lids(ep)}
        for name in gone:
            ep, server = self.listening[name]
            if ep["lid"] not in used:
                self._accept_queued(ep, server)
        for name in gone + list(started):
            old = self.listening.pop(name, None)
            if old is not None:
                old[1].close()
        for name in gone + [n for n, (ep, _s) in started.items() if not ep.get("tls")]:
            self.cert_stores.pop(name, None)
        self.retired = (self.retired | set(gone)) - set(wanted)
        self.close_retired_idle()
        self.listening.update(started)
        self.alt_svc = {name: value for name, (ep, _s) in self.listening.items() if (value := http3.alt_svc(ep))}
        self.servers = [server for _ep, server in self.listening.values()]
        for lid in [lid for lid in self.listen_socks if lid not in used]:
            self.listen_socks.pop(lid).close()

    def _accept_queued(self, ep: dict[str, Any], server: asyncio.AbstractServer) -> None:
        """Serve the connections the kernel has accepted on a removed entrypoint's socket that no worker has taken
        yet: the master closes its copy of the socket once every worker has answered this generation, and closing
        the last copy of a listening socket resets every connection still queued in it."""
        if isinstance(server, http3.WithHttp3):       # QUIC connections are datagrams: only the TCP side has a queue
            server = server.tcp
        if isinstance(server, udp.UdpEntrypoint):     # datagrams: no connection waits to be accepted
            return
        if isinstance(server, tcp.TcpEntrypoint):
            server.accept_queued()
            return
        if isinstance(server, proxy_protocol.ProxyProtocolListener):
            for conn, addr in accept_queued(self.listen_socks[ep["lid"]]):
                server.take(conn, addr)
            return
        store = self.cert_stores.get(ep["name"])
        factory = _client_factory(self, ep["name"], b"https" if store else b"http", ep["port"], store is not None)
        for conn, _addr in accept_queued(self.listen_socks[ep["lid"]]):
            self.loop.create_task(self.loop.connect_accepted_socket(factory, conn,
                                                                    ssl=store.front if store else None))

    def close_retired_idle(self) -> None:
        """Close the idle connections of removed entrypoints (``retired``). One whose request is still unread in the
        kernel is not idle, whatever its protocol thinks (closing it would reset the client): the sweep tries again
        until every connection of a removed entrypoint is gone."""
        left: set[str] = set()
        for conn in list(self.connections):
            name = getattr(conn, "entrypoint", None)
            if name in self.retired and (unread_bytes(conn.transport) or not conn.close_if_idle()):
                left.add(name)
        self.retired = left

    def _receive_sockets(self, lids: list[int]) -> None:
        """Take the listening sockets the master sent (SCM_RIGHTS) just before this generation message."""
        assert self.fdsock is not None
        self.fdsock.settimeout(5.0)
        _msg, fds, _flags, _addr = socket.recv_fds(self.fdsock, 64, len(lids))
        if len(fds) != len(lids):
            for fd in fds:
                os.close(fd)
            raise RuntimeError(f"expected {len(lids)} listening sockets from the master, got {len(fds)}")
        for lid, fd in zip(lids, fds):
            old = self.listen_socks.pop(lid, None)
            if old is not None:
                old.close()
            self.listen_socks[lid] = socket.socket(fileno=fd)

    async def load_generation(self, msg: dict[str, Any]) -> None:
        """A ``generation`` message: new runtime, and (when the message names them) new entrypoint servers.
        Either everything is applied or the previous runtime and servers stay."""
        if msg.get("fd_lids"):
            self._receive_sockets(msg["fd_lids"])
        previous = (self.slots, self.runtime)
        self.load(msg["compiled"])
        if msg.get("listeners") is not None:
            try:
                await self.apply_listeners(msg["listeners"])
            except BaseException:
                self.slots, self.runtime = previous
                self.plane.report_generation(self.runtime.generation)
                raise

    async def sweep(self) -> None:
        while not self.stopped.is_set():
            await asyncio.sleep(SWEEP_INTERVAL)
            now = self.now = time.monotonic()
            for up in [u for u in self.waiting if u.deadline < now]:
                self.waiting.discard(up)
                up.timed_out()
            lim = self.limits
            for conn in list(self.connections):     # header, idle and body timeouts (limits.py)
                conn.sweep(now, lim)
            for pool in self.pools.values():
                pool.sweep(now)
            for store in self.cert_stores.values():
                store.reload(only_if_changed=True)
            if self.retired:
                self.close_retired_idle()
            self.plane.heartbeat()

    async def drain(self, timeout: float) -> None:
        """Graceful stop: stop accepting, close idle connections, wait for in-flight exchanges. A connection
        whose next request is still unread in the kernel is not idle (closing it would reset the client): it
        is served and closed once idle, like a connection that was busy."""
        if self.draining:
            return
        self.draining = True
        for server in self.servers:
            server.close()
        deadline = time.monotonic() + timeout
        while True:
            for conn in list(self.connections):
                if not unread_bytes(conn.transport):
                    conn.close_if_idle()
            if not self.connections or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.transport.abort()
        for pool in self.pools.values():
            pool.close()
        self.stopped.set()

    async def serve_channel(self) -> None:
        while True:
            msg = await self.channel.recv()
            if msg is None:                      # the master is gone: finish what we have and leave
                await self.drain(self.graceful_timeout)
                return
            op = msg.get("op")
            if op == "generation":
                try:
                    await self.load_generation(msg)
                except Exception as e:           # noqa: BLE001 — reported to the master, old runtime kept
                    log.exception("generation %s failed to load", msg["compiled"].get("generation"))
                    self.channel.send({"op": "load_failed", "generation": msg["compiled"]["generation"],
                                       "error": f"{type(e).__name__}: {e}", "lids": sorted(self.listen_socks)})
                else:
                    self.channel.send({"op": "loaded", "generation": self.runtime.generation,
                                       "lids": sorted(self.listen_socks)})
            elif op == "acme_tokens":
                self.acme_tokens = dict(msg.get("tokens") or {})
            elif op == "stop":
                if msg.get("graceful", True):
                    self.loop.create_task(self.drain(float(msg.get("timeout", self.graceful_timeout))))
                else:
                    self.stopped.set()


def _client_factory(worker: Worker, name: str, scheme: bytes, port: int, tls: bool):  # type: ignore[no-untyped-def]
    def factory(client: tuple[str, int] | None = None):  # type: ignore[no-untyped-def]
        if worker.connections.count(name) >= worker.limits.max_connections > 0:
            return limits.Refused()
        return Handover(worker, name, scheme, port, tls, client)
    return factory


async def run(slot: int, channel_fd: int) -> int:
    loop = asyncio.get_running_loop()
    channel = await Channel.open(socket.socket(fileno=channel_fd))
    boot = await channel.recv()
    if boot is None or boot.get("op") != "boot":
        return EXIT_BOOT_ERROR
    worker = Worker(slot, loop, channel)
    worker.graceful_timeout = float(boot.get("graceful_timeout", 30.0))
    try:
        worker.plane = Plane.attach(boot["plane"], worker_slot=slot)
        worker.plane.heartbeat()
        if boot.get("fdsock") is not None:
            worker.fdsock = socket.socket(fileno=boot["fdsock"])
        worker.acme_tokens = dict(boot.get("acme_tokens") or {})
        worker.load(boot["compiled"])
        await worker.start_servers(boot["listeners"], boot["fds"])
    except Exception as e:  # noqa: BLE001 — a worker that cannot boot tells the master why, then exits
        log.exception("worker failed to boot")
        channel.send({"op": "boot_failed", "error": f"{type(e).__name__}: {e}"})
        await asyncio.sleep(0.05)
        return EXIT_BOOT_ERROR
    loop.add_signal_handler(signal.SIGTERM, lambda: loop.create_task(worker.drain(worker.graceful_timeout)))
    loop.add_signal_handler(signal.SIGUSR1, worker.obs.reopen)   # logrotate: reopen access log files
    channel.send({"op": "ready", "pid": os.getpid(), "generation": worker.runtime.generation})
    tasks = [loop.create_task(worker.sweep()), loop.create_task(worker.serve_channel())]
    await worker.stopped.wait()
    for t in tasks:
        t.cancel()
    await worker.build_middlewares.close(CLOSE_TIMEOUT)
    await worker.obs.close()
    worker.plane.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="a3s-gateway-worker")
    ap.add_argument("--slot", type=int, required=True)
    ap.add_argument("--channel-fd", type=int, required=True)
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--log-format", default="json")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C reaches the whole group; the master decides
    gwlog.setup(args.log_level, args.log_format, proc=f"worker-{args.slot}")
    exchange.DEBUG = exchange.log.isEnabledFor(logging.DEBUG)
    return uvloop.run(run(args.slot, args.channel_fd))
