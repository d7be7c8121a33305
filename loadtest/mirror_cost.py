"""What a 100 % mirror to a slow backend does to the primary's latency: wrk against the real gateway twice in one
run, the router's service a plain load balancer, then a mirroring service copying every request to a backend
that sleeps ``--sleep`` seconds per request (5 by default). Prints wrk's p50/p99 and req/s for each.

    python loadtest/mirror_cost.py [--duration 10] [--conns 50] [--sleep 5] [--rounds 2]

The primary is ``tests/e2e/backend.py``; the mirror an aiohttp app started here. Runs alternate (plain, mirrored,
plain, ...) so drift on a shared machine hits both alike.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from harness import Backend, Gateway, free_port, port_open, wait_until  # noqa: E402

SLOW = """
import asyncio, sys
from aiohttp import web
async def slow(request):
    await request.read()
    await asyncio.sleep(float(sys.argv[2]))
    return web.Response(text="late")
app = web.Application()
app.router.add_route("*", "/{tail:.*}", slow)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def config(primary: str, mirror: str | None) -> str:
    head = textwrap.dedent(f"""
        [entrypoints.web]
        address = "127.0.0.1:{{web}}"
        [admin]
        address = "127.0.0.1:{{admin}}"
        [services.primary.load_balancer]
        servers = [{{url = "{primary}"}}]
        [routers.all]
        rule = "PathPrefix(`/`)"
        """)
    if mirror is None:
        return head + 'service = "primary"\n'
    return head + textwrap.dedent(f"""
        service = "live"
        [services.slow.load_balancer]
        servers = [{{url = "{mirror}"}}]
        [services.live.mirroring]
        service = "primary"
        mirrors = [{{name = "slow", percent = 100}}]
        timeout = "30s"
        """)


def wrk(url: str, duration: int, conns: int) -> dict[str, float]:
    out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{duration}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return {"p50": ms("50%"), "p99": ms("99%"), "rps": rps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--sleep", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    primary = Backend("primary")
    port = free_port()
    slow = subprocess.Popen([sys.executable, "-c", SLOW, str(port), str(args.sleep)])
    wait_until(lambda: port_open(port), what="slow mirror")
    results: dict[str, list[dict[str, float]]] = {"plain": [], "mirrored": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.rounds):
                for kind, mirror in (("plain", None), ("mirrored", f"http://127.0.0.1:{port}")):
                    folder = Path(tmp) / f"{kind}{r}"
                    folder.mkdir()
                    g = Gateway(config(primary.url, mirror), folder)
                    try:
                        results[kind].append(wrk(g.url + "/", args.duration, args.conns))
                    finally:
                        g.stop()
    finally:
        slow.terminate()
        primary.stop()
    for kind, runs in results.items():
        line = "  ".join(f"p50 {x['p50']:.2f} ms p99 {x['p99']:.2f} ms {x['rps']:.0f} req/s" for x in runs)
        print(f"{kind:9} {line}")
    p99 = {k: sorted(x["p99"] for x in v)[len(v) // 2] for k, v in results.items()}
    print(f"mirrored/plain p99 (median of rounds): {p99['mirrored'] / p99['plain']:.2f}")


if __name__ == "__main__":
    main()
