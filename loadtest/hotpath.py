"""Python cost of one proxied request on the worker's hot path, without sockets or the kernel.

Drives the real ``ClientProtocol``/``UpstreamProtocol`` pair with in-memory transports: each iteration feeds
one request to the client side and one response to the bound upstream connection, with the real router,
middleware chain, balancer, shared-memory plane and observability of a generation compiled from a config.
The kernel's share (~10 µs per proxied request on loopback, see shared/bench/RESULTS.md) is not included, so
this isolates what our code adds; compare variants and commits with it, not with wall-clock benchmarks.

    python loadtest/hotpath.py [plain|full|minproxy|CONFIG.toml] [--requests N] [--profile]
                               [--access-log PATH] [--tracing] [--routers N]

``minproxy`` drives the minimal uvloop+httptools proxy of ``../shared/bench/minproxy.py`` the same way (its
protocols, its pool, the same request and response, the same in-memory transports): the anchor the gateway's
figures compare with, in instructions (``loadtest/icount.sh minproxy``) and in time.

``--sockets`` serves the requests over loopback sockets instead, on uvloop, from a client process (10 keep-alive
connections) to the reference origin on 127.0.0.1:9001 (``loadtest/bench`` starts it; ``nginx -p ../shared/bench/
-c conf/origin.conf`` alone; ``--origin HOST:PORT`` names another): the event loop, the transports and the real
upstream pool are then counted too (``loadtest/icount.sh full --sockets``), as they are in a worker, which
callgrind cannot follow itself.

``--access-log PATH`` (e.g. /dev/null) and ``--tracing`` (every request sampled, no exporter) add the
``[access_log]`` / ``[tracing]`` tables to the config, to measure what they cost. ``--routers N`` replaces the
routers with N host-rule routers (``Host(`svcI.example.com`)``, one service) and sends the requests to the last
one's host, to measure routing cost against the router count (compare N=10 with N=1000).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from a3s_gateway.worker.http1 import ClientProtocol  # noqa: E402
from support.inmemory import ORIGIN, REQUEST, RESPONSE, Transport, load_config, loaded_worker  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default="plain")
    ap.add_argument("--requests", type=int, default=50000)
    ap.add_argument("--profile", action="store_true", help="print the top functions by own time (cProfile)")
    ap.add_argument("--access-log", metavar="PATH", help="add an access log (JSON) to PATH, e.g. /dev/null")
    ap.add_argument("--tracing", action="store_true", help="add tracing (every request sampled, no exporter)")
    ap.add_argument("--routers", type=int, default=0, metavar="N",
                    help="N host-rule routers instead of the config's; requests go to the last one's host")
    ap.add_argument("--sockets", action="store_true", help="over loopback sockets, from a client process")
    ap.add_argument("--origin", default=ORIGIN, metavar="HOST:PORT",
                    help=f"with --sockets: the origin the backend connections go to (default {ORIGIN})")
    ap.add_argument("--drive", nargs=2, type=int, metavar=("PORT", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sockets and args.routers:
        ap.error("--sockets sends the profiles' request (Host 127.0.0.1:8090): it does not combine with --routers")
    if args.drive:
        return asyncio.run(drive(*args.drive))
    if args.config == "minproxy":
        return minproxy_sockets(args) if args.sockets else run(args, minproxy_exchange(), "minproxy")
    cfg = load_config(args.config, args.routers, args.access_log, args.tracing, args.origin)
    request = REQUEST
    if args.routers:
        request = REQUEST.replace(b"127.0.0.1:8090", b"svc%d.example.com" % (args.routers - 1))
    loop = uvloop.new_event_loop() if args.sockets else None
    with loaded_worker(cfg, "hotpath", connections=0 if args.sockets else 1, loop=loop) as worker:
        ep = next(iter(cfg.entrypoints))
        if args.sockets:
            return serve(args, worker.loop, lambda: ClientProtocol(worker, ep, b"http", 8090))
        client = ClientProtocol(worker, ep, b"http", 8090)
        client.connection_made(Transport())

        def one() -> None:
            client.data_received(request)
            ex = client.queue[0] if client.queue else None
            up = ex.upstream if ex is not None else None
            if up is None:
                raise SystemExit(f"request was not proxied (answered locally: {ex and ex.local!r})")
            up.data_received(RESPONSE)

        what = f"{args.routers} routers" if args.routers else args.config
        what += " +access-log" if args.access_log else ""
        what += " +tracing" if args.tracing else ""
        run(args, one, what)


def _minproxy() -> Any:
    """``../shared/bench/minproxy.py``, the anchor (outside the repository: only its profile needs it)."""
    bench = Path(__file__).resolve().parents[2] / "shared" / "bench"     # beside the repository, as loadtest/bench
    if not (bench / "minproxy.py").is_file():
        raise SystemExit(f"minproxy: {bench / 'minproxy.py'} not found (the reference benchmark's folder)")
    sys.path.insert(0, str(bench))
    import minproxy  # noqa: PLC0415

    return minproxy


def minproxy_exchange() -> Callable[[], None]:
    """One request and response through the minimal proxy's protocols, with one pooled upstream."""
    minproxy = _minproxy()
    pool = minproxy.Pool(asyncio.new_event_loop(), "127.0.0.1", 9001, 100)
    up = minproxy.UpstreamProtocol(pool)
    up.connection_made(Transport())
    pool.idle.append(up)
    client = minproxy.ClientProtocol(pool, pool.loop)
    client.connection_made(Transport())

    def one() -> None:
        client.data_received(REQUEST)
        client.queue[0].upstream.data_received(RESPONSE)

    return one


def minproxy_sockets(args: argparse.Namespace) -> None:
    """``--sockets`` for the anchor: the minimal proxy's protocols on uvloop, its pool connecting to the origin."""
    minproxy = _minproxy()
    loop = uvloop.new_event_loop()
    host, _, port = args.origin.rpartition(":")
    pool = minproxy.Pool(loop, host, int(port), 100)
    serve(args, loop, lambda: minproxy.ClientProtocol(pool, loop))


def serve(args: argparse.Namespace, loop: asyncio.AbstractEventLoop, factory: Callable[[], Any]) -> None:
    """``--sockets``: listen on a free loopback port and serve a client process's ``args.requests`` requests."""
    server = loop.run_until_complete(loop.create_server(factory, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    t0 = time.perf_counter()
    client = loop.run_until_complete(asyncio.create_subprocess_exec(
        sys.executable, __file__, "--drive", str(port), str(args.requests)))
    if loop.run_until_complete(client.wait()) != 0:
        raise SystemExit("the client process failed")
    elapsed = time.perf_counter() - t0
    server.close()
    print(f"{args.config} over sockets: {elapsed / args.requests * 1e6:.2f} µs wall per request, client included "
          f"({args.requests} requests)")


async def drive(port: int, requests: int, connections: int = 10) -> None:
    """The client of ``--sockets``: ``requests`` GETs over ``connections`` keep-alive connections, each answered
    200 with its whole body read."""
    async def one_connection(n: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(n):
            writer.write(REQUEST)
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            if not head.startswith(b"HTTP/1.1 200 ") or length is None:
                raise SystemExit(f"unexpected response: {head[:200]!r}")
            await reader.readexactly(int(length[1]))
        writer.close()

    await asyncio.gather(*(one_connection(requests // connections) for _ in range(connections)))


def run(args: argparse.Namespace, one: Callable[[], None], what: str) -> None:
    """Warm up, then time (or profile) ``args.requests`` exchanges and print the one-line figure."""
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
        pstats.Stats(profiler).sort_stats("tottime").print_stats(int(os.environ.get("TOP", "25")))
    print(f"{what}: {elapsed / args.requests * 1e6:.2f} µs of Python per proxied request "
          f"({args.requests} requests{', under cProfile' if profiler else ''})")


if __name__ == "__main__":
    main()
