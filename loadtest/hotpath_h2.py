"""Python cost of one proxied HTTP/2 stream on the worker's hot path, without sockets or the kernel.

Like ``hotpath.py`` (whose in-memory worker and config profiles, tests/support/inmemory.py, it reuses), but
the client side speaks HTTP/2: each batch opens ``--streams`` concurrent GET streams (h2load's ``-m``) on one
connection, the real ``H2Server`` routes them to HTTP/1.1 upstream connections, each upstream answers, and the
server's frames go back to the client. After a warm-up with an ``h2`` client, the client is nearly free (as
h2load's C code is), so the figure is the gateway's own Python.

    python loadtest/hotpath_h2.py [plain|full|CONFIG.toml] [--requests N] [--streams M] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from pathlib import Path

import h2.config
import h2.connection
import h2.events
from a3s_gateway.shared.config import GatewayConfig
from a3s_gateway.worker.http2 import H2Server
from a3s_gateway.worker.process import Worker

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.inmemory import RESPONSE, Wire, config_text, loaded_worker  # noqa: E402


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
    """Inside the loop, as in a worker: the server's flush runs on the loop turn after the work.

    A real ``h2`` client warms the connection up (SETTINGS, HPACK tables); then ``FastClient`` stands in for
    h2load, whose C code costs next to nothing: the same HEADERS frames, and WINDOW_UPDATE when half the
    connection window was used. So the figure is the gateway's own, which is what the gateway can change."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    server = H2Server(worker, entrypoint, b"http", 8090)
    wire = Wire()
    server.connection_made(wire)

    def answer_upstreams() -> None:
        for stream in list(server.streams.values()):
            up = stream.ex.upstream
            if up is None:
                raise SystemExit(f"stream was not proxied (answered locally: {stream.ex.local!r})")
            up.data_received(RESPONSE)

    async def warm_batch() -> None:
        for _ in range(args.streams):
            client.send_headers(client.get_next_available_stream_id(), HEADERS, end_stream=True)
        server.data_received(client.data_to_send())
        answer_upstreams()
        await asyncio.sleep(0)
        for event in client.receive_data(wire.take()):
            if isinstance(event, h2.events.DataReceived):
                client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        server.data_received(client.data_to_send())

    for _ in range(20):
        await warm_batch()
    fast = FastClient(client)

    async def batch() -> None:
        server.data_received(fast.requests(args.streams))
        answer_upstreams()
        await asyncio.sleep(0)
        acks = fast.responses(wire.take(), args.streams)
        if acks:
            server.data_received(acks)

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
          f"({n} streams{', under cProfile' if profiler else ''})")


HEADERS = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"127.0.0.1:8090"), (b":path", b"/small"),
           (b"user-agent", b"h2load"), (b"accept", b"*/*")]


class FastClient:
    """Goes on where a warmed-up ``h2`` client stopped: every request is the same header block (all of it in
    the HPACK table by now), and responses are only walked frame by frame for their DATA length and END_STREAM."""

    def __init__(self, client: h2.connection.H2Connection) -> None:
        self.block = client.encoder.encode(HEADERS)
        if client.encoder.encode(HEADERS) != self.block:
            raise SystemExit("the request header block is not stable")
        self.next_id = client.get_next_available_stream_id()
        self.unacked = 0

    def requests(self, n: int) -> bytes:
        head = len(self.block).to_bytes(3, "big") + b"\x01\x05"      # HEADERS, END_STREAM | END_HEADERS
        frames = []
        for _ in range(n):
            frames += (head, self.next_id.to_bytes(4, "big"), self.block)
            self.next_id += 2
        return b"".join(frames)

    def responses(self, data: bytes, n: int) -> bytes:
        """Checks that ``n`` streams ended; returns a connection WINDOW_UPDATE when one is due."""
        ended = 0
        i = 0
        while i < len(data):
            length = int.from_bytes(data[i:i + 3], "big")
            kind, flags = data[i + 3], data[i + 4]
            if kind == 0:
                self.unacked += length
            if kind in (0, 1) and flags & 1:
                ended += 1
            i += 9 + length
        if ended != n:
            raise SystemExit(f"{ended} of {n} streams ended")
        if self.unacked < 32768:
            return b""
        unacked, self.unacked = self.unacked, 0
        return b"\x00\x00\x04\x08\x00\x00\x00\x00\x00" + unacked.to_bytes(4, "big")

if __name__ == "__main__":
    main()
