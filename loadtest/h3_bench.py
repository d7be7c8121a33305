"""What HTTP/3 costs the gateway compared with HTTP/2 over TLS: requests per second of one worker's core.

    python loadtest/h3_bench.py [--requests 5000] [--streams 10] [--rounds 3]

Starts one gateway with one worker (a TLS entrypoint with ``http3 = true``) in front of the tests' aiohttp
backend, then sends the same GETs over HTTP/2 (httpx, one connection, ``--streams`` concurrent streams) and over
HTTP/3 (aioquic's client, one QUIC connection, as many streams). The clients are Python too and would be the
bottleneck of a wall-clock figure on a small machine, so the figure is the *worker's own CPU time* per request
(``/proc/PID/stat``, user + system): ``requests / worker CPU seconds`` is what one core sustains once the
worker is saturated, whoever is slower on this machine. Wall-clock req/s are printed beside it for reference.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "e2e"))

from aioquic.asyncio.client import connect  # noqa: E402
from certs import CA  # noqa: E402
from h3_client import H3Connection, configuration  # noqa: E402
from harness import Backend, Gateway, free_port  # noqa: E402

NAME = "localhost"
CONFIG = """
[entrypoints.secure]
address = "127.0.0.1:{secure}"
http3 = true
[entrypoints.secure.tls]
cert_file = "%(cert)s"
key_file = "%(key)s"
[admin]
address = "127.0.0.1:{admin}"
[routers.all]
rule = "PathPrefix(`/`)"
service = "origin"
[services.origin.load_balancer]
servers = [{url = "%(origin)s"}]
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def in_batches(send: Callable[[int], Awaitable[int]], requests: int, streams: int) -> None:
    for start in range(0, requests, streams):
        statuses = await asyncio.gather(*(send(i) for i in range(start, min(start + streams, requests))))
        if any(s != 200 for s in statuses):
            raise RuntimeError(f"unexpected statuses {set(statuses)}")


async def over_h2(port: int, cafile: str, requests: int, streams: int) -> None:
    ctx = ssl.create_default_context(cafile=cafile)
    limits = httpx.Limits(max_connections=1)
    async with httpx.AsyncClient(http1=False, http2=True, verify=ctx, limits=limits,
                                 base_url=f"https://{NAME}:{port}") as c:
        async def send(i: int) -> int:
            return (await c.get(f"/bench/{i}")).status_code
        await in_batches(send, requests, streams)


async def over_h3(port: int, cafile: str, requests: int, streams: int) -> None:
    async with connect("127.0.0.1", port, configuration=configuration(cafile, NAME),
                       create_protocol=H3Connection) as conn:
        async def send(i: int) -> int:
            return (await conn.request("GET", f"{NAME}:{port}", f"/bench/{i}")).status  # type: ignore[attr-defined]
        await in_batches(send, requests, streams)


def measure(pid: int, run: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """(worker CPU seconds, wall seconds) of one load run."""
    cpu, wall = cpu_seconds(pid), time.perf_counter()
    asyncio.run(run())
    return cpu_seconds(pid) - cpu, time.perf_counter() - wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--streams", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    opts = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="h3bench-"))
    ca = CA(tmp / "pki")
    pair = ca.issue(NAME)
    origin = Backend("origin")
    gw = Gateway(CONFIG % {"cert": pair.cert, "key": pair.key, "origin": origin.url}, tmp, workers=1,
                 extra_args=["--log-level", "warning"], secure=free_port())
    try:
        port, cafile, (pid,) = gw.ports["secure"], str(ca.path), gw.worker_pids()
        loads = {"HTTP/2 (TLS)": over_h2, "HTTP/3": over_h3}
        for load in loads.values():              # warm-up: imports, pools, the backend's keep-alive connection
            measure(pid, lambda load=load: load(port, cafile, 500, opts.streams))
        print(f"# 1 worker, {opts.requests} GETs x {opts.rounds} rounds, {opts.streams} concurrent streams on one "
              f"connection, aiohttp backend over HTTP/1.1")
        for name, load in loads.items():
            cpu = wall = 0.0
            for _ in range(opts.rounds):
                c, w = measure(pid, lambda load=load: load(port, cafile, opts.requests, opts.streams))
                cpu, wall = cpu + c, wall + w
            n = opts.requests * opts.rounds
            print(f"{name:14s} {n / cpu:8.0f} req/s per worker core ({cpu / n * 1e6:6.0f} µs CPU/request)   "
                  f"wall {n / wall:6.0f} req/s (client-bound)")
    finally:
        gw.stop()
        origin.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
