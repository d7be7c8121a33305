#!/usr/bin/env python3
"""The master's CPU with a dashboard page open, against the same master left alone.

    python loadtest/dashboard_cost.py [--seconds S] [--routers N] [--page PATH]

Starts a real gateway (2 workers, ``N`` routers over the tests' aiohttp backend, an admin token), logs in through the
login form like a browser, then measures the master process's CPU time (user + system) over two windows of
``S`` seconds: idle, then polling ``PATH?fragment=live`` every 2 s as the dashboard's script does (the sampler
reads the plane once a second while a page is watched). Prints both as a percentage of one core, and the
median time to render the full page. The admin listener lives in the master, so the master's CPU is its cost.
Loopback only; every wait has a deadline.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))

from harness import Backend, Gateway, wait_until  # noqa: E402

TOKEN = "dashboard-cost-token"


def config(routers: int, origin: str) -> str:
    head = f"""
[entrypoints.web]
address = "127.0.0.1:{{web}}"
[admin]
address = "127.0.0.1:{{admin}}"
token = "{TOKEN}"
[services.app.load_balancer]
servers = [{{url = "{origin}"}}]
"""
    return head + "".join(f'\n[routers.r{i:03d}]\nrule = "PathPrefix(`/r{i:03d}`)"\nservice = "app"\n'
                          for i in range(routers))


def cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--routers", type=int, default=50)
    ap.add_argument("--page", default="/dashboard/")
    args = ap.parse_args()

    origin = Backend("origin")
    with tempfile.TemporaryDirectory() as tmp:
        g = Gateway(config(args.routers, origin.url), Path(tmp), workers=2, wait=False,
                    extra_args=["--log-level", "warning"])
        try:
            def running() -> bool:
                r = httpx.get(g.admin + "/api/gateway/health", headers={"Authorization": f"Bearer {TOKEN}"})
                return r.json()["state"] == "running"
            wait_until(running, 30, what="gateway running")
            with httpx.Client(base_url=g.admin, timeout=10) as c:
                r = c.post("/dashboard/login", data={"token": TOKEN})        # the session cookie, as a browser
                assert r.status_code == 303 and c.cookies, r.status_code
                with httpx.Client(base_url=g.url) as traffic:                 # some counts to show
                    for i in range(200):
                        traffic.get(f"/r{i % args.routers:03d}")
                master = psutil.Process(g.proc.pid)
                time.sleep(3)                      # let start-up work settle before the idle window

                before = cpu(master)
                time.sleep(args.seconds)
                idle = (cpu(master) - before) / args.seconds * 100

                renders = []
                for _ in range(5):
                    t = time.perf_counter()
                    assert c.get(args.page).status_code == 200
                    renders.append(time.perf_counter() - t)
                before, start = cpu(master), time.monotonic()
                n = 0
                while time.monotonic() - start < args.seconds:
                    assert c.get(args.page, params={"fragment": "live"}).status_code == 200
                    n += 1
                    time.sleep(max(0.0, start + 2 * n - time.monotonic()))
                watched = (cpu(master) - before) / (time.monotonic() - start) * 100
        finally:
            g.stop()
            origin.stop()
    print(f"master CPU, % of one core, {args.routers} routers: idle {idle:.2f} %, "
          f"{args.page} open (refresh every 2 s) {watched:.2f} %, added {watched - idle:.2f} %")
    print(f"full page render (median of 5): {statistics.median(renders) * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
