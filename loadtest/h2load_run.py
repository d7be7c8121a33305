"""h2load against the real gateway: HTTP/2 cleartext (h2c prior knowledge), HTTP/2 over TLS (ALPN h2) and, as
the baseline on the same gateway, HTTP/1.1 (``h2load --h1``), each proxying to an nginx origin over HTTP/1.1.

    python loadtest/h2load_run.py [--requests 50000] [--clients 10] [--streams 10] [--workers 2]

Needs ``h2load`` (Debian ``nghttp2-client``) and ``nginx``. Starts its own origin and gateway on free loopback
ports and prints one line per scenario: requests/s, mean and max latency, and failures.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "e2e"))

from certs import CA  # noqa: E402
from harness import Gateway, free_port, port_open, wait_until  # noqa: E402

ORIGIN = """
worker_processes 1;
daemon off;
pid {tmp}/origin.pid;
error_log {tmp}/origin-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {tmp};
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ default_type text/plain; return 200 "{body}"; }}
    }}
}}
"""

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[entrypoints.secure]
address = "127.0.0.1:{secure}"
[entrypoints.secure.tls]
cert_file = "{pki}/bench.test.pem"
key_file = "{pki}/bench.test-key.pem"
[admin]
address = "127.0.0.1:{admin}"
[routers.all]
rule = "PathPrefix(`/`)"
service = "origin"
[services.origin.load_balancer]
servers = [{url = "http://127.0.0.1:{origin}"}]
"""


def h2load(args: list[str]) -> dict[str, str]:
    out = subprocess.run(["h2load", *args], capture_output=True, text=True, timeout=300).stdout
    rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    status = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed", out)
    latency = re.search(r"time for request:\s+([\d.]+\w+)\s+([\d.]+\w+)\s+([\d.]+\w+)", out)
    if not (rps and status and latency):
        raise RuntimeError(f"unexpected h2load output:\n{out}")
    return {"req/s": rps.group(1), "succeeded": status.group(4), "failed": status.group(5),
            "min": latency.group(1), "max": latency.group(2), "mean": latency.group(3)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=50000)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--streams", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    opts = ap.parse_args()
    for tool in ("h2load", "nginx"):
        if not shutil.which(tool):
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    tmp = Path(tempfile.mkdtemp(prefix="h2load-"))
    ca = CA(tmp / "pki")
    ca.issue("bench.test")
    origin_port = free_port()
    (tmp / "origin.conf").write_text(ORIGIN.format(tmp=tmp, port=origin_port, body="x" * 100))
    origin = subprocess.Popen(["nginx", "-p", str(tmp), "-c", str(tmp / "origin.conf")])
    gw = None
    try:
        wait_until(lambda: port_open(origin_port), what="nginx origin")
        config = CONFIG.replace("{pki}", str(ca.folder)).replace("{origin}", str(origin_port))
        gw = Gateway(config, tmp, workers=opts.workers, extra_args=["--log-level", "warning"], secure=free_port())
        n, c, m = str(opts.requests), str(opts.clients), str(opts.streams)
        scenarios = {
            f"h2c   -c{c} -m{m}": ["-n", n, "-c", c, "-m", m, f"{gw.url}/small"],
            f"h2/TLS -c{c} -m{m}": ["-n", n, "-c", c, "-m", m, f"https://127.0.0.1:{gw.ports['secure']}/small"],
            f"h1    -c{c}": ["--h1", "-n", n, "-c", c, f"{gw.url}/small"],
        }
        h2load(["-n", "2000", "-c", c, "-m", m, f"{gw.url}/warmup"])
        print(f"# {opts.workers} workers, {n} requests per scenario, nginx origin over HTTP/1.1 keep-alive")
        for name, args in scenarios.items():
            r = h2load(args)
            print(f"{name:20s} {r['req/s']:>10s} req/s  mean {r['mean']:>8s}  max {r['max']:>8s}  "
                  f"succeeded {r['succeeded']}  failed {r['failed']}")
    finally:
        if gw is not None:
            gw.stop()
        origin.terminate()
        origin.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
