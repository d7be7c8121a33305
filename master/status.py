"""``a3s-gateway status``: attach read-only to a running gateway's shared-memory plane and print its state.

    a3s-gateway status [--pid MASTER_PID] [--json]

Without ``--pid`` it picks the only live gateway on this host (and lists them when there are several). It
never writes to the plane and never talks to the master, so it works while the admin API is disabled or the
master is busy.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from ..shared.plane import Plane, PlaneError
from ..shared.plane.segments import list_ours, pid_alive, prefix_pid


def live_planes() -> list[str]:
    """Plane prefixes in /dev/shm whose master is alive."""
    prefixes = {name.rsplit(".", 1)[0] for name in list_ours() if name.endswith(".header")}
    return sorted(p for p in prefixes if pid_alive(prefix_pid(p) or 0))


def table(title: str, header: tuple[str, ...], rows: list[tuple[object, ...]]) -> list[str]:
    """A titled, column-aligned block: text columns left-aligned, numbers right-aligned (so digits line up)."""
    cells = [header, *(tuple(str(c) for c in row) for row in rows)]
    numeric = [all(isinstance(row[i], int | float) for row in rows) for i in range(len(header))]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["", title]
    for r in cells:
        lines.append("  " + "  ".join(c.rjust(w) if num else c.ljust(w)
                                      for c, w, num in zip(r, widths, numeric)).rstrip())
    return lines


def _name(entry: dict[str, Any]) -> str:
    return entry["name"] or f"#{entry['idx']}"


def render(snap: dict[str, Any]) -> str:
    lines = [f"gateway plane {snap['name']} (master pid {snap['master_pid']}, "
             f"{snap['shm_bytes'] / 2**20:.1f} MiB shared memory)"]
    lines += table("workers", ("slot", "pid", "generation", "restarts", "heartbeat"), [
        (w["slot"], w["pid"], w["generation"], w["restarts"],
         "never" if w["heartbeat_age_s"] is None else f"{w['heartbeat_age_s']:.1f}s ago") for w in snap["workers"]])
    lines += table("backends (requests: HTTP; connections: TCP connections and UDP sessions, relayed/failed)",
                   ("backend", "state", "in-flight", "requests", "connections", "bytes in", "bytes out",
                    "consecutive failures"), [
        (_name(b), "healthy" if b["healthy"] else "DOWN", b["inflight"], b["requests"],
         f"{b['connections']}/{b['connection_failures']}", b["bytes_in"], b["bytes_out"], b["consecutive_failures"])
        for b in snap["backends"]])
    if snap["breakers"]:
        lines += table("circuit breakers", ("breaker", "state"), [(_name(b), b["state"]) for b in snap["breakers"]])
    rl, st = snap["ratelimit"], snap["sticky"]
    lines += table("shared tables (active: rate-limit keys used in the last 60 s, sticky entries not expired)",
                   ("table", "entries", "used", "active"),
                   [("rate-limit", rl["entries"], rl["used"], rl["active_last_60s"]),
                    ("sticky", st["entries"], st["used"], st["live"])])
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="a3s-gateway status", description=__doc__.splitlines()[0])
    ap.add_argument("--pid", type=int, help="the master's pid (default: the only running gateway)")
    ap.add_argument("--json", action="store_true", help="print the raw snapshot as JSON")
    args = ap.parse_args(argv)
    planes = live_planes()
    if args.pid is not None:
        planes = [p for p in planes if prefix_pid(p) == args.pid]
    if not planes:
        print("no running a3s-gateway found on this host" + (f" with pid {args.pid}" if args.pid else ""),
              file=sys.stderr)
        return 1
    if len(planes) > 1:
        print("several gateways are running; pick one with --pid:", file=sys.stderr)
        for p in planes:
            print(f"  {prefix_pid(p)}  ({p})", file=sys.stderr)
        return 1
    try:
        plane = Plane.attach(planes[0])
    except PlaneError as e:
        print(f"cannot attach to {planes[0]}: {e}", file=sys.stderr)
        return 1
    try:
        snap = plane.snapshot()
    finally:
        plane.close()
    print(orjson.dumps(snap, option=orjson.OPT_INDENT_2).decode() if args.json else render(snap))
    return 0
