"""Python cost of one proxied HTTP/2 stream on the worker's hot path, without sockets or the kernel.

Like ``hotpath.py`` (whose fake transports, config profiles and flags it reuses), but the client side is an
``h2`` client connection: each batch opens ``--streams`` concurrent GET streams (h2load's ``-m``) on one
connection, the real ``H2Server`` routes them to HTTP/1.1 upstream connections, each upstream answers, and the
server's frames go back to the client (which acknowledges its DATA so the windows never close).

    python loadtest/hotpath_h2.py [plain|full|CONFIG.toml] [--requests N] [--streams M] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time

import h2.config
import h2.connection
import h2.events
from a3s_gateway.shared.config import GatewayConfig
from a3s_gateway.worker.http2 import H2Server
from a3s_gateway.worker.process import Worker
from hotpath import RESPONSE, Transport, config_text, loaded_worker


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default="plain")
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--streams", type=int, default=10)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    cfg = GatewayConfig.from_toml(config_text(args.config), source=f"<{args.config}>")
    with loaded_worker(cfg, "hotpathhtwo", connections=args.streams) as worker:
        worker.loop.run_until_complete(drive(worker, next(iter(cfg.entrypoints)), args))


async def drive(worker: Worker, entrypoint: str, args: argparse.Namespace) -> None:
    """Inside the loop, as in a worker: the server's flush runs on the loop turn after the work."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    server = H2Server(worker, entrypoint, b"http", 8090)
    wire = Wire()
    server.connection_made(wire)
    headers = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"127.0.0.1:8090"),
               (b":path", b"/small"), (b"user-agent", b"h2load"), (b"accept", b"*/*")]

    async def batch() -> None:
        for _ in range(args.streams):
            client.send_headers(client.get_next_available_stream_id(), headers, end_stream=True)
        server.data_received(client.data_to_send())
        for stream in list(server.streams.values()):
            up = stream.ex.upstream
            if up is None:
                raise SystemExit(f"stream was not proxied (answered locally: {stream.ex.local!r})")
            up.data_received(RESPONSE)
        await asyncio.sleep(0)
        for event in client.receive_data(wire.take()):
            if isinstance(event, h2.events.DataReceived):
                client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        server.data_received(client.data_to_send())

    for _ in range(20):
        await batch()
    batches = max(1, args.requests // args.streams)
    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()
    t0 = time.perf_counter()
    for _ in range(batches):
        await batch()
    elapsed = time.perf_counter() - t0
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    n = batches * args.streams
    print(f"{args.config} h2 -m{args.streams}: {elapsed / n * 1e6:.2f} µs of Python per proxied stream "
          f"(the test's h2 client included; {n} streams{', under cProfile' if profiler else ''})")


if __name__ == "__main__":
    main()
