#!/usr/bin/env python3
"""CPU cost per request of the observability features: metrics observations, access log, tracing.

    python loadtest/obs_cost.py [--duration S] [--rounds N] [--connections C] [--variants a,b,...]

Starts an nginx origin (100-byte answers; an aiohttp origin when nginx is missing) and, for each variant,
a real gateway with one worker proxying to it, drives it with ``wrk`` for ``--duration`` seconds, and
reads the CPU time (user + system) the gateway's processes (master + worker) used during the run. Variants
run interleaved, ``--rounds`` times each; the median CPU-µs per request is reported with its spread.

Variants:
    no_metrics      this checkout with the observability hook removed from the worker (a patched copy
                    in a temporary folder, on PYTHONPATH): the baseline for the metrics cost
    off             metrics on (always), access log and tracing off: the default config
    access_log      + JSON access log to a file
    tracing         + tracing (W3C, every request sampled, no exporter)
    both            + access log and tracing
    both_otlp       + access log, tracing and OTLP export to a local sink (answers 200)

Prints one line per variant and the relative costs; loopback only; every wait has a deadline.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
GATEWAY = [sys.executable, "-c", "from a3s_gateway.master.cli import main; raise SystemExit(main())"]
# the hooks removed for no_metrics, and what replaces them (the plane's request counters stay)
HOOK_LINES = {
    "        self.worker.obs.finish(ex, self)       # the plane's counters and observations, access log, spans\n":
        "        r, s, b = ex.route, ex.service, ex.backend\n"
        "        self.worker.plane.record(r.idx if r is not None else -1, s.idx if s is not None else -1,\n"
        "                                 b.idx if b is not None else -1, ex.status, ex.req_bytes, ex.resp_bytes)\n",
    "        if self.worker.obs.tracer is not None:\n            self.worker.obs.tracer.start(ex)\n": "",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(what)


def start_origin(tmp: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    if shutil.which("nginx"):
        (tmp / "logs").mkdir(exist_ok=True)
        conf = tmp / "origin.conf"
        conf.write_text(f"""worker_processes 1; daemon off; pid {tmp}/origin.pid; error_log {tmp}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000; client_body_temp_path {tmp}/body;
  server {{ listen 127.0.0.1:{port} backlog=4096;
    location / {{ default_type text/plain; return 200 "{'0123456789' * 10}"; }} }} }}
""")
        proc = subprocess.Popen(["nginx", "-p", str(tmp), "-c", str(conf)], stderr=subprocess.DEVNULL)
    else:
        proc = subprocess.Popen([sys.executable, str(REPO / "loadtest" / "locust_run.py"), "origin", "--port",
                                 str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: socket.create_connection(("127.0.0.1", port), 0.2).close() or True, 10, "origin up")
    return proc, port


class Sink:
    """An OTLP receiver that accepts and discards spans."""

    def __init__(self) -> None:
        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"


def patched_tree(tmp: Path) -> Path:
    """A copy of the package without the observability hook in the HTTP/1.1 protocol."""
    root = tmp / "nohook"
    pkg = root / "a3s_gateway"
    shutil.copytree(REPO / "master" / "_a3s_gateway", pkg)
    for sub in ("master", "worker", "shared"):
        shutil.copytree(REPO / sub, pkg / sub, ignore=shutil.ignore_patterns("__pycache__", "_a3s_gateway"))
    http1 = pkg / "worker" / "http1.py"
    text = http1.read_text()
    for line, replacement in HOOK_LINES.items():
        if line not in text:
            raise SystemExit(f"cannot build the no_metrics tree: {line.strip()!r} not found in worker/http1.py")
        text = text.replace(line, replacement)
    http1.write_text(text)
    return root


def config(variant: str, origin: int, web: int, admin: int, tmp: Path, sink: Sink | None) -> str:
    text = f"""
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[routers.all]
rule = "PathPrefix(`/`)"
service = "origin"
[services.origin.load_balancer]
servers = [{{url = "http://127.0.0.1:{origin}"}}]
"""
    if variant in ("access_log", "both", "both_otlp"):
        text += f'\n[access_log]\nenabled = true\npath = "{tmp}/access-{variant}.log"\n'
    if variant in ("tracing", "both", "both_otlp"):
        text += "\n[tracing]\nenabled = true\nsample_rate = 1.0\n"
        if variant == "both_otlp" and sink is not None:
            text += f'[tracing.otlp]\nendpoint = "{sink.url}"\n'
    return text


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def run_one(variant: str, args: argparse.Namespace, origin: int, tmp: Path, sink: Sink | None,
            nohook: Path | None) -> tuple[float, float]:
    web, admin = free_port(), free_port()
    cfg = tmp / f"gw-{variant}.toml"
    cfg.write_text(config(variant, origin, web, admin, tmp, sink))
    env = dict(os.environ)
    if variant == "no_metrics" and nohook is not None:
        env["PYTHONPATH"] = str(nohook) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([*GATEWAY, "--config", str(cfg), "--workers", "1", "--log-level", "warning"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def running() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/api/gateway/health", timeout=1) as r:
                return b'"running"' in r.read()
        wait_until(running, 30, f"gateway ({variant}) running")
        url = f"http://127.0.0.1:{web}/small"
        wrk = ["wrk", "-t1", f"-c{args.connections}"]
        subprocess.run([*wrk, "-d1s", url], capture_output=True, check=False, timeout=30)   # warm-up
        pids = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        before = cpu_of(pids)
        out = subprocess.run([*wrk, f"-d{args.duration}s", url], capture_output=True, text=True, check=False,
                             timeout=args.duration + 30).stdout
        used = cpu_of(pids) - before
        m = re.search(r"(\d+) requests in", out)
        if not m or "Non-2xx" in out or "Socket errors" in out:
            raise SystemExit(f"wrk run failed for {variant}:\n{out}")
        n = int(m.group(1))
        return used / n * 1e6, n / args.duration
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--variants", default="no_metrics,off,access_log,tracing,both,both_otlp")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed (apt-get install wrk)")
    variants = args.variants.split(",")
    results: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="a3s-obs-cost-") as d:
        tmp = Path(d)
        origin, port = start_origin(tmp)
        sink = Sink() if "both_otlp" in variants else None
        nohook = patched_tree(tmp) if "no_metrics" in variants else None
        try:
            for r in range(args.rounds):
                for v in variants:
                    us, rps = run_one(v, args, port, tmp, sink, nohook)
                    results[v].append((us, rps))
                    print(f"# round {r + 1} {v:<11} {us:7.1f} CPU-µs/req  {rps:8.0f} req/s", file=sys.stderr)
        finally:
            origin.terminate()
            origin.wait(10)
    print(f"gateway: 1 worker, wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} rounds, "
          f"{os.cpu_count()} CPUs; median (min-max) CPU-µs per request of master + worker")
    base = statistics.median(u for u, _ in results["off"]) if "off" in results else None
    for v in variants:
        us = [u for u, _ in results[v]]
        med = statistics.median(us)
        rel = f"  {100 * (med / base - 1):+5.1f}% vs off" if base else ""
        print(f"{v:<11} {med:7.1f} ({min(us):.1f}-{max(us):.1f}) CPU-µs/req  "
              f"{statistics.median(r for _, r in results[v]):8.0f} req/s{rel}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
