"""The performance issue's two figures that wrk's table does not give: worker RSS over millions of requests, and
HTTP/2 (h2c, ``h2load -c50 -m10``) requests per second next to nginx's, on the benchmark's ``full`` profile.

    python loadtest/soak.py rss [--millions 2] [--workers 2]
    python loadtest/soak.py h2 [--requests 50000] [--rounds 2]

Both start the reference nginx origin from ``../shared/bench`` (``conf/origin.conf``, 127.0.0.1:9001) and the
gateway with ``loadtest/bench_config.py full`` (50 routers, headers + rate-limit, plane and metrics on).
``rss`` drives the gateway with ``wrk -t1 -c50`` on the 100-byte path until each million is done and prints
every worker's RSS after each one (growth between the first and last million is the leak check). ``h2`` also
starts the reference nginx proxy (``conf/nginx-proxy.conf``, h2c on 127.0.0.1:8181) and runs h2load against
both, interleaved, printing requests/s and the gateway/nginx ratio. Loopback only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
BENCH = Path(__file__).resolve().parents[2] / "shared" / "bench"
sys.path.insert(0, str(HERE.parent / "tests" / "e2e"))

from harness import Gateway, port_open, wait_until  # noqa: E402


def nginx(conf: str) -> subprocess.Popen:
    (BENCH / "logs").mkdir(exist_ok=True)
    (BENCH / "run").mkdir(exist_ok=True)
    return subprocess.Popen(["nginx", "-p", f"{BENCH}/", "-c", f"conf/{conf}", "-e", f"logs/{conf}.log"])


def gateway(workers: int, tmp: Path) -> Gateway:
    text = subprocess.run([sys.executable, str(HERE / "bench_config.py"), "full"], capture_output=True, text=True,
                          check=True).stdout
    text = text.replace("127.0.0.1:8090", "127.0.0.1:{web}").replace("127.0.0.1:9190", "127.0.0.1:{admin}")
    return Gateway(text, tmp, workers=workers, extra_args=["--log-level", "warning"])


def wrk(url: str, seconds: int) -> int:
    out = subprocess.run(["wrk", "-t1", "-c50", f"-d{seconds}s", url], capture_output=True, text=True,
                         timeout=seconds + 60).stdout
    m = re.search(r"(\d+) requests in", out)
    if not m:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    return int(m.group(1))


def rss(gw: Gateway, millions: int) -> None:
    pids = gw.worker_pids()
    print(f"# {len(pids)} workers; RSS in MB per worker after each million requests (wrk -t1 -c50, 100 B)")
    print(f"start      {[round(psutil.Process(p).memory_info().rss / 2**20, 1) for p in pids]}")
    done = 0
    for m in range(1, millions + 1):
        for _ in range(200):                   # bounded: 200 x 5 s is far above a million at any sane rate
            if done >= m * 1_000_000:
                break
            done += wrk(gw.url + "/small", 5)
        print(f"{done / 1e6:5.2f} M    {[round(psutil.Process(p).memory_info().rss / 2**20, 1) for p in pids]}",
              flush=True)
    if gw.worker_pids() != pids:
        print("# a worker was replaced during the run: the figures above are not comparable")


def h2load(url: str, requests: int) -> float:
    out = subprocess.run(["h2load", "-n", str(requests), "-c", "50", "-m", "10", url], capture_output=True,
                         text=True, timeout=300).stdout
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    ok = re.search(r"(\d+) succeeded, (\d+) failed", out)
    if not (m and ok):
        raise RuntimeError(f"unexpected h2load output:\n{out}")
    if int(ok.group(2)):
        print(f"# {ok.group(2)} requests failed against {url}")
    return float(m.group(1))


def h2(gw: Gateway, requests: int, rounds: int) -> None:
    proxy = nginx("nginx-proxy.conf")
    try:
        wait_until(lambda: port_open(8181), what="nginx h2c proxy on 8181")
        h2load(gw.url + "/small", 2000)
        print(f"# h2load -n {requests} -c50 -m10, h2c, 100 B; nginx-proxy.conf (2 workers) vs the gateway")
        for r in range(1, rounds + 1):
            theirs = h2load("http://127.0.0.1:8181/small", requests)
            ours = h2load(gw.url + "/small", requests)
            print(f"round {r}: nginx {theirs:9.0f} req/s   a3s-gateway {ours:9.0f} req/s   "
                  f"ratio {ours / theirs:5.1%}", flush=True)
    finally:
        proxy.terminate()
        proxy.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("rss", "h2"))
    ap.add_argument("--millions", type=int, default=2)
    ap.add_argument("--requests", type=int, default=50000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    opts = ap.parse_args()
    missing = [t for t in ("nginx", "wrk" if opts.what == "rss" else "h2load") if not shutil.which(t)]
    if missing:
        print(f"not installed: {', '.join(missing)}", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    origin = nginx("origin.conf")
    gw = None
    try:
        wait_until(lambda: port_open(9001), what="nginx origin on 9001")
        gw = gateway(opts.workers, tmp)
        t0 = time.monotonic()
        rss(gw, opts.millions) if opts.what == "rss" else h2(gw, opts.requests, opts.rounds)
        print(f"# {time.monotonic() - t0:.0f} s")
    finally:
        if gw is not None:
            gw.stop()
        origin.terminate()
        origin.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
