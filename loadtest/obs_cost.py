#!/usr/bin/env python3
"""CPU cost per request of the observability features: metrics observations, access log, tracing.

    python loadtest/obs_cost.py [--duration S] [--rounds N] [--connections C] [--variants a,b,...]

Starts an nginx origin (100-byte answers; an aiohttp origin when nginx is missing) and, for each variant,
a real gateway with one worker proxying to it; all of them stay up for the whole run. Each round drives every
gateway in turn with ``wrk`` for ``--duration`` seconds and reads the CPU time (user + system) its processes
(master + worker) used. The median CPU-µs per request is reported with its spread, and the cost of each
variant as the median of its per-round differences to ``off``: on a shared machine the load drifts between
rounds, so a pair of runs seconds apart compares better than two medians.

``VARIANT@REV`` runs a variant from commit REV's package (``git archive``, on PYTHONPATH), to compare a change
with its parent in one interleaved run (it is compared with ``off@REV`` when that is listed too):
``--variants off,access_log,off@HEAD~1,access_log@HEAD~1``.

Variants:
    no_metrics      this checkout with the observability hooks removed from the exchange (a patched copy
                    in a temporary folder, on PYTHONPATH), pure Python: the baseline for the metrics cost,
                    to compare with a run of ``off`` under A3S_GATEWAY_NO_EXTENSIONS=1 (not a default variant)
    off             metrics on (always), access log and tracing off: the default config
    access_log      + JSON access log to a file
    access_log_null + JSON access log to /dev/null (what the in-memory hotpath.py measures; the difference
                    to access_log is the kernel's share of appending to a file)
    tracing         + tracing (W3C, every request sampled, no exporter)
    both            + access log and tracing
    both_otlp       + access log, tracing and OTLP export to a local sink (answers 200)

Prints one line per variant (user and system CPU shown apart: the kernel's share of proxying is about half)
and the relative costs; loopback only; every wait has a deadline.

Expect the costs here to be about twice what ``hotpath.py`` measures in memory. On a 2-core machine wrk, nginx
and the worker share the cores and the worker is preempted about once per request (0.6-1.0 involuntary context
switches per request), so its Python runs with cold caches: with 4 MiB written between calls (a context switch's
worth), ``AccessLog.log`` takes 4.1-4.5 µs instead of 2.1-2.5 µs and ``Tracer.start`` 2.2-2.6 µs instead of
1.2-1.3 µs. The page-cache append of the log is ~0.2 µs per line (``access_log_null`` shows it).
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
    "    conn.worker.obs.recorder.finish(ex, conn)  # the plane's counters and observations, access log, spans\n":
        "    r, s, b = ex.route, ex.service, ex.backend\n"
        "    conn.worker.plane.record(r.idx if r is not None else -1, s.idx if s is not None else -1,\n"
        "                             b.idx if b is not None else -1, ex.status, ex.req_bytes, ex.resp_bytes)\n",
    "    tracer = conn.worker.obs.tracer\n    if tracer is not None:":
        "    tracer = conn.worker.obs.tracer\n    if False:",
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


def package_tree(src: Path, dest: Path) -> Path:
    """A copy of the package in the checkout ``src``, importable with ``dest`` on PYTHONPATH."""
    pkg = dest / "a3s_gateway"
    shutil.copytree(src / "master" / "_a3s_gateway", pkg)
    for sub in ("master", "worker", "shared"):
        shutil.copytree(src / sub, pkg / sub, ignore=shutil.ignore_patterns("__pycache__", "_a3s_gateway"))
    return dest


def patched_tree(tmp: Path) -> Path:
    """A copy of the package without the observability hooks of the exchange, pure Python (the hooks are in the
    compiled exchange, which the other compiled modules are built against: the copy drops every extension)."""
    root = package_tree(REPO, tmp / "nohook")
    for ext in root.rglob("*.so"):
        ext.unlink()
    exchange = root / "a3s_gateway" / "worker" / "exchange.py"
    text = exchange.read_text()
    for line, replacement in HOOK_LINES.items():
        if line not in text:
            raise SystemExit(f"cannot build the no_metrics tree: {line.strip()!r} not found in worker/exchange.py")
        text = text.replace(line, replacement)
    exchange.write_text(text)
    return root


def commit_tree(rev: str, tmp: Path) -> Path:
    """The package as of commit ``rev`` (``git archive``: the index and working tree are left alone)."""
    src = tmp / f"src-{rev}"
    src.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "master", "worker", "shared"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    return package_tree(src, tmp / f"rev-{rev}")


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
    elif variant == "access_log_null":
        text += '\n[access_log]\nenabled = true\npath = "/dev/null"\n'
    if variant in ("tracing", "both", "both_otlp"):
        text += "\n[tracing]\nenabled = true\nsample_rate = 1.0\n"
        if variant == "both_otlp" and sink is not None:
            text += f'[tracing.otlp]\nendpoint = "{sink.url}"\n'
    return text


def cpu_of(pids: list[int]) -> tuple[float, float]:
    """User and system CPU seconds used so far by ``pids``."""
    user = system = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            user += t.user
            system += t.system
        except psutil.Error:
            pass
    return user, system


class Gateway:
    """One variant's gateway (one worker), kept running for every round so that rounds compare like with like."""

    def __init__(self, label: str, origin: int, tmp: Path, sink: Sink | None, trees: dict[str, Path]) -> None:
        self.label = label
        variant, _, rev = label.partition("@")
        web, admin = free_port(), free_port()
        cfg = tmp / f"gw-{len(list(tmp.glob('gw-*')))}.toml"
        cfg.write_text(config(variant, origin, web, admin, tmp, sink).replace(f"access-{variant}.log",
                                                                              f"{cfg.stem}.log"))
        env = dict(os.environ)
        tree = trees.get("no_metrics" if variant == "no_metrics" else rev)
        if tree is not None:
            env["PYTHONPATH"] = str(tree) + os.pathsep + env.get("PYTHONPATH", "")
        self.url = f"http://127.0.0.1:{web}/small"
        self.admin = admin
        self.proc = subprocess.Popen([*GATEWAY, "--config", str(cfg), "--workers", "1", "--log-level", "warning"],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_running(self) -> None:
        def running() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/api/gateway/health", timeout=1) as r:
                return b'"running"' in r.read()
        wait_until(running, 30, f"gateway ({self.label}) running")
        self.pids = [self.proc.pid] + [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)]

    def measure(self, seconds: int, connections: int) -> tuple[float, float, float]:
        """wrk for ``seconds``: user and system CPU-µs per request of master + worker, and requests/s."""
        before = cpu_of(self.pids)
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", self.url], capture_output=True,
                             text=True, check=False, timeout=seconds + 30).stdout
        after = cpu_of(self.pids)
        m = re.search(r"(\d+) requests in", out)
        if not m or "Non-2xx" in out or "Socket errors" in out:
            raise SystemExit(f"wrk run failed for {self.label}:\n{out}")
        n = int(m.group(1))
        return (after[0] - before[0]) / n * 1e6, (after[1] - before[1]) / n * 1e6, n / seconds

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--variants", default="off,access_log,tracing,both,both_otlp")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed (apt-get install wrk)")
    labels = args.variants.split(",")
    results: dict[str, list[tuple[float, float, float]]] = {v: [] for v in labels}
    with tempfile.TemporaryDirectory(prefix="a3s-obs-cost-") as d:
        tmp = Path(d)
        origin, port = start_origin(tmp)
        sink = Sink() if any(v.partition("@")[0] == "both_otlp" for v in labels) else None
        trees = {rev: commit_tree(rev, tmp) for rev in {v.partition("@")[2] for v in labels} - {""}}
        if any(v.partition("@")[0] == "no_metrics" for v in labels):
            trees["no_metrics"] = patched_tree(tmp)
        gateways: list[Gateway] = []
        try:
            gateways = [Gateway(v, port, tmp, sink, trees) for v in labels]
            for g in gateways:
                g.wait_running()
                g.measure(1, args.connections)                           # warm-up
            for r in range(args.rounds):
                # rotate the order each round: no variant always runs right after the same neighbour
                for g in gateways[r % len(gateways):] + gateways[: r % len(gateways)]:
                    user, system, rps = g.measure(args.duration, args.connections)
                    results[g.label].append((user, system, rps))
                    print(f"# round {r + 1} {g.label:<17} {user + system:7.1f} CPU-µs/req (user {user:5.1f}, "
                          f"sys {system:5.1f})  {rps:8.0f} req/s", file=sys.stderr)
        finally:
            for g in gateways:
                g.stop()
            origin.terminate()
            origin.wait(10)
    print(f"gateway: 1 worker, wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} rounds, "
          f"{os.cpu_count()} CPUs; median (min-max) CPU-µs per request of master + worker")
    for v in labels:
        us = [u + s for u, s, _ in results[v]]
        rel = ""
        ref = "off@" + v.partition("@")[2] if "@" in v else "off"     # a commit's variant against its own off
        base = results.get(ref)
        if base is not None:
            # the median of the per-round differences: both sides of a pair ran moments apart
            diff = statistics.median(u - (b[0] + b[1]) for u, b in zip(us, base))
            rel = f"  {diff:+5.1f} µs ({100 * diff / statistics.median(b[0] + b[1] for b in base):+5.1f}%) vs {ref}"
        print(f"{v:<17} {statistics.median(us):7.1f} ({min(us):.1f}-{max(us):.1f}) CPU-µs/req  "
              f"user {statistics.median(u for u, _, _ in results[v]):5.1f}  "
              f"sys {statistics.median(s for _, s, _ in results[v]):5.1f}  "
              f"{statistics.median(r for _, _, r in results[v]):8.0f} req/s{rel}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
