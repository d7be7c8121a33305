"""A served revision's instance for the serving tests and the cold-start loadtest: a tiny HTTP/1.1 server on
plain asyncio streams (no imports beyond the standard library, so it starts fast), run by the ``process``
executor as ``python serving_instance.py --port {port}``.

It listens ``--delay`` seconds after its process started (a slow starter; the interpreter's own start-up counts
in it), answers every request ``--status`` (200) with a JSON body
naming ``--name`` and its port (but ``/healthz`` always 200: a revision that passes its readiness probe yet fails
its requests), holds a request ``?hold=SECONDS`` before answering, and records the most
requests it ever had in flight at once into ``--record`` (a file, rewritten when the maximum grows), so a test
can check a concurrency limit from the instance's side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
from urllib.parse import parse_qs, urlsplit


class Instance:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.in_flight = 0
        self.most = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1].decode()
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                await self.answer(writer, target)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def answer(self, writer: asyncio.StreamWriter, target: str) -> None:
        self.in_flight += 1
        if self.in_flight > self.most:
            self.most = self.in_flight
            if self.args.record:
                with open(self.args.record, "a") as f:
                    f.write(f"{self.most}\n")
        try:
            hold = float(parse_qs(urlsplit(target).query).get("hold", ["0"])[0])
            if hold:
                await asyncio.sleep(hold)
        finally:
            self.in_flight -= 1
        body = json.dumps({"name": self.args.name, "port": self.args.port, "pid": os.getpid()}).encode()
        writer.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (200 if urlsplit(target).path == "/healthz" else self.args.status, len(body), body))
        await writer.drain()


def age() -> float:
    """Seconds since this process started (its start time in /proc, in clock ticks since boot)."""
    with open("/proc/self/stat") as f:
        ticks = int(f.read().rpartition(")")[2].split()[19])
    return time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", default="instance")
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--record", default=None)
    ap.add_argument("--status", type=int, default=200, help="the status of every answer (500: a bad revision)")
    args = ap.parse_args()
    forever = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: os._exit(0))   # nothing to flush: quietly
    if args.delay:
        await asyncio.sleep(max(0.0, args.delay - age()))
    server = await asyncio.start_server(Instance(args).serve, "127.0.0.1", args.port)
    async with server:
        await forever.wait()


if __name__ == "__main__":
    asyncio.run(main())
