"""Scale-from-zero latency of a served revision: request arrival to response, with the ``process`` executor and an
instance that starts in ``--delay`` seconds (200 ms by default), over ``--rounds`` cold starts.

Runs the real ``a3s-gateway`` binary (2 workers) with windows shrunk so the revision goes back to zero between
rounds; each round waits until ``/api/serving`` shows no instance, then times one request from a fresh client
connection. Prints p50, p90 and max.

    python loadtest/serving_cold_start.py [--rounds 20] [--delay 0.2] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from harness import Gateway, wait_until  # noqa: E402
from test_serving import config, revision  # noqa: E402


def instances(g: Gateway) -> list:
    with urllib.request.urlopen(g.admin + "/api/serving", timeout=2) as r:
        return json.loads(r.read())["fn"]["revisions"]["v1"]["instances"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--delay", type=float, default=0.2, help="seconds the instance takes to start listening")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    text = config(revision("v1", args=f"--delay {args.delay}", initial_scale=0),
                  stable_window="1s", scale_to_zero_grace="0.2s", tick="0.2s")
    with tempfile.TemporaryDirectory() as tmp:
        g = Gateway(text, Path(tmp), workers=args.workers)
        try:
            times = []
            for _ in range(args.rounds):
                wait_until(lambda: not instances(g), 30, 0.05, what="revision at zero")
                req = urllib.request.Request(g.url + "/", headers={"Host": "fn.test"})
                t0 = time.perf_counter()
                with urllib.request.urlopen(req, timeout=10) as r:
                    r.read()
                    cold = r.headers.get("X-A3S-Cold-Start")
                times.append(time.perf_counter() - t0)
                if cold is None:
                    raise SystemExit("a request was not a cold start (no X-A3S-Cold-Start)")
        except Exception:
            print(g.logs()[-6000:], file=sys.stderr)
            raise
        finally:
            g.stop()
    ms = sorted(t * 1000 for t in times)
    print("each (ms):", " ".join(f"{t * 1000:.0f}" for t in times))
    print(f"scale from zero, instance starting in {args.delay * 1000:.0f} ms, {len(ms)} cold starts: "
          f"p50 {statistics.median(ms):.0f} ms, p90 {ms[int(len(ms) * 0.9) - 1]:.0f} ms, max {ms[-1]:.0f} ms")


if __name__ == "__main__":
    main()
