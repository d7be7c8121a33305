"""Python cost of one proxied request on the worker's hot path, without sockets or the kernel.

Drives the real ``ClientProtocol``/``UpstreamProtocol`` pair with in-memory transports: each iteration feeds
one request to the client side and one response to the bound upstream connection, with the real router,
middleware chain, balancer, shared-memory plane and observability of a generation compiled from a config.
The kernel's share (~10 µs per proxied request on loopback, see shared/bench/RESULTS.md) is not included, so
this isolates what our code adds; compare variants and commits with it, not with wall-clock benchmarks.

    python loadtest/hotpath.py [plain|full|CONFIG.toml] [--requests N] [--profile]
                               [--access-log PATH] [--tracing] [--routers N]

``--access-log PATH`` (e.g. /dev/null) and ``--tracing`` (every request sampled, no exporter) add the
``[access_log]`` / ``[tracing]`` tables to the config, to measure what they cost. ``--routers N`` replaces the
routers with N host-rule routers (``Host(`svcI.example.com`)``, one service) and sends the requests to the last
one's host, to measure routing cost against the router count (compare N=10 with N=1000).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from a3s_gateway.master.generations import Generations
from a3s_gateway.shared.config import GatewayConfig
from a3s_gateway.shared.plane import Plane, PlaneLayout
from a3s_gateway.worker.http1 import ClientProtocol
from a3s_gateway.worker.process import Worker
from a3s_gateway.worker.upstream.http1 import UpstreamProtocol

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


def config_text(which: str) -> str:
    if which in ("plain", "full"):
        here = Path(__file__).parent
        return subprocess.run([sys.executable, str(here / "bench_config.py"), which], capture_output=True,
                              text=True, check=True).stdout
    return Path(which).read_text()


def routers_config(n: int) -> str:
    """N host-rule routers over one service; the requests go to the last one's host."""
    parts = ['[entrypoints.web]\naddress = "127.0.0.1:8090"\n[services.origin.load_balancer]\n'
             'servers = [{url = "http://127.0.0.1:9001"}]\n']
    for i in range(n):
        parts.append(f'[routers.r{i}]\nrule = "Host(`svc{i}.example.com`)"\nservice = "origin"\n')
    return "".join(parts)


def load_config(args: argparse.Namespace) -> GatewayConfig:
    text = routers_config(args.routers) if args.routers else config_text(args.config)
    if args.access_log:
        text += f'\n[access_log]\nenabled = true\npath = "{args.access_log}"\n'
    if args.tracing:
        text += "\n[tracing]\nenabled = true\nsample_rate = 1.0\n"
    if args.config.endswith((".yaml", ".yml")) and not args.routers:
        if args.access_log or args.tracing:
            raise SystemExit("--access-log / --tracing need a TOML config")
        return GatewayConfig.from_file(args.config)
    return GatewayConfig.from_toml(text, source=f"<{args.config}>")


@contextmanager
def loaded_worker(cfg: GatewayConfig, tag: str, connections: int = 1) -> Iterator[Worker]:
    """A worker in this process with ``cfg`` compiled and loaded on a fresh plane (removed afterwards), its event
    loop set as current, and ``connections`` idle upstream connections (fake transports) per backend."""
    loop = asyncio.new_event_loop()
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default="plain")
    ap.add_argument("--requests", type=int, default=50000)
    ap.add_argument("--profile", action="store_true", help="print the top functions by own time (cProfile)")
    ap.add_argument("--access-log", metavar="PATH", help="add an access log (JSON) to PATH, e.g. /dev/null")
    ap.add_argument("--tracing", action="store_true", help="add tracing (every request sampled, no exporter)")
    ap.add_argument("--routers", type=int, default=0, metavar="N",
                    help="N host-rule routers instead of the config's; requests go to the last one's host")
    args = ap.parse_args()
    cfg = load_config(args)
    request = REQUEST
    if args.routers:
        request = REQUEST.replace(b"127.0.0.1:8090", b"svc%d.example.com" % (args.routers - 1))
    with loaded_worker(cfg, "hotpath") as worker:
        ep = next(iter(cfg.entrypoints))
        client = ClientProtocol(worker, ep, b"http", 8090)
        client.connection_made(Transport())

        def one() -> None:
            client.data_received(request)
            ex = client.queue[0] if client.queue else None
            up = ex.upstream if ex is not None else None
            if up is None:
                raise SystemExit(f"request was not proxied (answered locally: {ex and ex.local!r})")
            up.data_received(RESPONSE)

        for _ in range(200):
            one()
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        t0 = time.perf_counter()
        for _ in range(args.requests):
            one()
        elapsed = time.perf_counter() - t0
        if profiler:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        what = f"{args.routers} routers" if args.routers else args.config
        what += " +access-log" if args.access_log else ""
        what += " +tracing" if args.tracing else ""
        print(f"{what}: {elapsed / args.requests * 1e6:.2f} µs of Python per proxied request "
              f"({args.requests} requests{', under cProfile' if profiler else ''})")


if __name__ == "__main__":
    main()
