#!/usr/bin/env python3
"""The performance regression guard: CPU per proxied request of the gateway as a ratio to the minimal
uvloop+httptools proxy (``../shared/bench/minproxy.py``) and to nginx, measured in one interleaved run per build.

    python loadtest/guard.py [plain|full] [--build compiled|pure|both] [--duration S] [--rounds N] [--conns C]

Runs ``loadtest/bench`` (``../shared/bench/run_anchors.sh``) limited to nginx, the minimal proxy (2 workers)
and the gateway (2 workers, the given profile, default ``full``) on the 100-byte path, then prints each one's
median CPU-µs per request and req/s, and the gateway's ratios. ``--build both`` (the default) does that twice,
the compiled build and then pure Python (``A3S_GATEWAY_NO_EXTENSIONS=1``), each run with its own anchors, since
bench interleaves one gateway at a time. About a minute per build with the defaults; loopback only. Ratios from
one run are comparable across commits, absolute figures are not (the box may be busy).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SWITCH = "A3S_GATEWAY_NO_EXTENSIONS"


def measure(profile: str, build: str, args: argparse.Namespace) -> int:
    """One interleaved run of nginx, the minimal proxy and the gateway in ``build``; prints its table."""
    name = f"a3s-gateway-{profile}-{build}"
    env = dict(os.environ, ONLY="nginx,minproxy-2w", DURATION=str(args.duration), ROUNDS=str(args.rounds),
               CASES=f"small:{args.conns}", EXTRA_NAME=name, PYTHON=os.environ.get("PYTHON", sys.executable))
    if build == "pure":
        env[SWITCH] = "1"        # inherited by the gateway bench starts: its modules load from their .py
    else:
        env.pop(SWITCH, None)
    proc = subprocess.run(["bash", str(HERE / "bench"), profile], env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    found = re.search(r"# raw results: (\S+)", proc.stdout)
    if proc.returncode != 0 or not found:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        return proc.returncode or 1
    results = json.loads(Path(found.group(1)).read_text())["results"]

    def median(target: str, field: str) -> float:
        return statistics.median(r[field] for r in results if r["target"] == target)

    rows = {t: (median(t, "cpu_ms_per_1k"), median(t, "rps")) for t in ("nginx", "minproxy-2w", name)}
    print(f"# {build} build: 100-byte bodies, wrk -c{args.conns}, {args.rounds} rounds x {args.duration} s, medians")
    for target, (cpu, rps) in rows.items():
        print(f"{target:28s} {cpu:6.1f} µs CPU/request  {rps:8.0f} req/s")
    cpu, rps = rows[name]
    print(f"gateway / minproxy: {cpu / rows['minproxy-2w'][0]:.2f}x CPU per request, "
          f"{rps / rows['minproxy-2w'][1]:.0%} of its req/s")
    print(f"gateway / nginx:    {cpu / rows['nginx'][0]:.2f}x CPU per request, "
          f"{rps / rows['nginx'][1]:.0%} of its req/s", flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile", nargs="?", default="full", choices=("plain", "full"))
    ap.add_argument("--build", default="both", choices=("compiled", "pure", "both"),
                    help="the gateway build(s) to measure (default both: compiled, then pure Python)")
    ap.add_argument("--duration", type=int, default=4, help="seconds per wrk run (default 4)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--conns", type=int, default=50, help="wrk connections (default 50)")
    args = ap.parse_args()
    builds = ("compiled", "pure") if args.build == "both" else (args.build,)
    return max(measure(args.profile, build, args) for build in builds)


if __name__ == "__main__":
    raise SystemExit(main())
