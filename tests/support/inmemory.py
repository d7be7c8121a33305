"""A worker in this process with fake transports: the real protocols, router, middleware chain, balancer,
shared-memory plane and observability of a generation compiled from a config, driven without sockets.

``loaded_worker(cfg, tag)`` yields the ``Worker`` with idle upstream connections (``Transport``s that swallow
writes) already pooled per backend; feed a client protocol ``REQUEST`` and the bound upstream ``RESPONSE``.
Used by ``loadtest/hotpath.py`` and ``loadtest/hotpath_h2.py``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from a3s_gateway.master.generations import Generations
from a3s_gateway.master.serving.revisions import Idle, expand, served
from a3s_gateway.shared.config import GatewayConfig
from a3s_gateway.shared.plane import Plane, PlaneLayout
from a3s_gateway.worker.process import Worker
from a3s_gateway.worker.upstream.http1 import UpstreamProtocol

ROOT = Path(__file__).resolve().parents[2]
BENCH_CONFIG = ROOT / "loadtest" / "bench_config.py"
ORIGIN = "127.0.0.1:9001"        # the reference origin, the profiles' backend

REQUEST = b"GET /small HTTP/1.1\r\nHost: 127.0.0.1:8090\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Thu, 26 Nov 2026 04:00:00 GMT\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Length: 100\r\nConnection: keep-alive\r\n\r\n"
            + b"x" * 100)


class Transport(asyncio.Transport):
    """Swallows writes (counting bytes); never closes on its own."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def writelines(self, lines: list[bytes]) -> None:
        for d in lines:
            self.written += len(d)

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


class Wire(Transport):
    """Keeps what the server writes, for the client to read."""

    def __init__(self) -> None:
        super().__init__()
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def take(self) -> bytes:
        data, self.out = b"".join(self.out), []
        return data


def config_text(which: str) -> str:
    """A profile of ``loadtest/bench_config.py`` (``plain``, ``full``, ``weighted``, ``served``, ``outliers``),
    or a config file's text."""
    if which in ("plain", "full", "weighted", "served", "outliers"):
        return subprocess.run([sys.executable, str(BENCH_CONFIG), which], capture_output=True,
                              text=True, check=True).stdout
    return Path(which).read_text()


def routers_config(n: int) -> str:
    """N host-rule routers over one service; the requests go to the last one's host."""
    parts = ['[entrypoints.web]\naddress = "127.0.0.1:8090"\n[services.origin.load_balancer]\n'
             f'servers = [{{url = "http://{ORIGIN}"}}]\n']
    for i in range(n):
        parts.append(f'[routers.r{i}]\nrule = "Host(`svc{i}.example.com`)"\nservice = "origin"\n')
    return "".join(parts)


class OneInstance(Idle):
    """Every revision has one ready instance: the origin."""

    def __init__(self, origin: str = ORIGIN) -> None:
        self.origin = origin

    def ready(self, service: str, revision: str) -> list[str]:
        return [self.origin]


def load_config(config: str, routers: int = 0, access_log: str | None = None, tracing: bool = False,
                origin: str = ORIGIN) -> GatewayConfig:
    """``config`` (a profile or a file), or ``routers`` host-rule routers instead, plus an ``[access_log]`` to
    ``access_log`` and/or ``[tracing]`` (every request sampled) when asked; the profiles' backend at ``origin``."""
    text = (routers_config(routers) if routers else config_text(config)).replace(ORIGIN, origin)
    if access_log:
        text += f'\n[access_log]\nenabled = true\npath = "{access_log}"\n'
    if tracing:
        text += "\n[tracing]\nenabled = true\nsample_rate = 1.0\n"
    if config.endswith((".yaml", ".yml")) and not routers:
        if access_log or tracing:
            raise SystemExit("--access-log / --tracing need a TOML config")
        return GatewayConfig.from_file(config)
    cfg = GatewayConfig.from_toml(text, source=f"<{config}>")
    if served(cfg.services):       # what the master's serving controller compiles: one ready instance each
        data = cfg.to_dict()
        expand(data, OneInstance(origin))
        cfg = GatewayConfig(data, cfg.source)
    return cfg


@contextmanager
def loaded_worker(cfg: GatewayConfig, tag: str, connections: int = 1,
                  loop: asyncio.AbstractEventLoop | None = None) -> Iterator[Worker]:
    """A worker in this process with ``cfg`` compiled and loaded on a fresh plane (removed afterwards), its event
    loop (``loop``, or a new asyncio one) set as current, and ``connections`` idle upstream connections (fake
    transports) per backend."""
    loop = loop or asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    master_plane = Plane.create(PlaneLayout(max_workers=1), tag=tag)
    try:
        compiled = Generations(master_plane).compile(cfg)
        master_plane.set_worker(0, 1)
        worker = Worker(0, loop, channel=None)  # type: ignore[arg-type]
        worker.plane = Plane.attach(master_plane.name, worker_slot=0)
        worker.load(compiled)
        for backend in (b for s in worker.runtime.services.values() for b in s.backends):
            for _ in range(connections):
                up = UpstreamProtocol(backend.pool)
                up.connection_made(Transport())
                backend.pool.release(up)
        try:
            yield worker
        finally:
            worker.plane.close()
    finally:
        master_plane.close()
        master_plane.unlink()
