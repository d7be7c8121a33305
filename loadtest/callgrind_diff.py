"""Per-request cost by function: two callgrind runs of a different request count, subtracted (``icount.sh KEEP=``).

``icount.sh`` prints one total per request; this says where it goes. Start-up and warm-up are the same in both
runs, so they cancel out, and what is left, divided by the difference of the counts, is each C function's own
(exclusive) cost per request: compiled gateway code by its Cython name (``__pyx_f_11a3s_gateway_...``), the
interpreter by its source file. With the cache model (``CACHE=1``) the misses are attributed too, which is where
the memory traffic of generic attribute lookups shows. ``--callers F`` lists who calls the functions whose name
contains F, per request, with the inclusive cost of those calls (e.g. ``_PyType_Lookup``, then
``PyObject_GenericGetAttr``: which compiled functions still look attributes up by name).

    CACHE=1 KEEP=/tmp/cg loadtest/icount.sh full --sockets      # keeps /tmp/cg.1 and /tmp/cg.2
    python loadtest/callgrind_diff.py /tmp/cg.1 /tmp/cg.2 --requests 1000 [--sort D1mr] [--top 30]
    python loadtest/callgrind_diff.py /tmp/cg.1 /tmp/cg.2 --requests 1000 --callers _PyType_Lookup
"""

from __future__ import annotations

import argparse
import re
import subprocess
from collections import defaultdict

_NUMBER = r"([\d,]+|\.)(?: \([^)]*\))?"
_SOURCE = re.compile(r"^/tmp/python-build[^/]*/Python-[\d.]+/")   # pyenv's build path of the interpreter


def _annotate(path: str, events: list[str], *args: str) -> str:
    return subprocess.run(["callgrind_annotate", f"--show={','.join(events)}", "--threshold=100", *args, path],
                          capture_output=True, text=True, check=True).stdout


def _value(text: str) -> int:
    return 0 if text == "." else int(text.replace(",", ""))


def _name(text: str) -> str:
    return _SOURCE.sub("", text.split(" [", 1)[0].strip())


def functions(path: str, events: list[str]) -> dict[str, list[int]]:
    """Each function's own cost, one value per event."""
    row = re.compile(r"^\s*" + r"\s+".join([_NUMBER] * len(events)) + r"\s+(\S.*)$")
    out: dict[str, list[int]] = defaultdict(lambda: [0] * len(events))
    for line in _annotate(path, events).splitlines():
        m = row.match(line)
        if m and "PROGRAM TOTALS" not in line:
            name = _name(m.group(len(events) + 1))
            out[name] = [a + _value(b) for a, b in zip(out[name], m.groups()[:len(events)])]
    return out


def callers(path: str, target: str) -> dict[str, list[int]]:
    """Callers of the functions whose name contains ``target``: [calls, inclusive instructions of those calls]."""
    caller = re.compile(r"^\s*" + _NUMBER + r"\s+<\s+(.*?) \(([\d,]+)x\)")
    callee = re.compile(r"^\s*" + _NUMBER + r"\s+\*\s+(.*)$")
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    pending: list[tuple[str, int, int]] = []
    for line in _annotate(path, ["Ir"], "--tree=caller", "--inclusive=yes").splitlines():
        if m := caller.match(line):
            pending.append((_name(m.group(2)), _value(m.group(3)), _value(m.group(1))))
        elif m := callee.match(line):
            if target in _name(m.group(2)):
                for name, calls, cost in pending:
                    out[name][0] += calls
                    out[name][1] += cost
            pending = []
        elif not line.strip():
            pending = []
    return out


def per_request(a: dict[str, list[int]], b: dict[str, list[int]], requests: int,
                width: int) -> list[tuple[list[float], str]]:
    """(values per request, function) for every function of either run; ``width`` values each."""
    zero = [0] * width
    return [([(y - x) / requests for x, y in zip(a.get(k, zero), b.get(k, zero))], k) for k in set(a) | set(b)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fewer", help="callgrind output of the run with fewer requests")
    ap.add_argument("more", help="callgrind output of the run with more requests")
    ap.add_argument("--requests", type=int, required=True, help="how many more requests the second run served")
    ap.add_argument("--sort", default="Ir", help="event to sort by: Ir, or with the cache model D1mr, I1mr, D1mw")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--callers", metavar="FUNCTION", help="list the callers of FUNCTION instead")
    args = ap.parse_args()
    if args.callers:
        rows = per_request(callers(args.fewer, args.callers), callers(args.more, args.callers), args.requests, 2)
        print(f"callers of *{args.callers}*, per request: calls, inclusive instructions of those calls")
        for (calls, cost), name in sorted(rows, reverse=True)[: args.top]:
            if calls >= 0.05:
                print(f"{calls:7.2f} {cost:9.0f}  {name}")
        return
    events = ["Ir"] if args.sort == "Ir" else ["Ir", args.sort]
    rows = per_request(functions(args.fewer, events), functions(args.more, events), args.requests, len(events))
    totals = [sum(r[0][i] for r in rows) for i in range(len(events))]
    print("per request, own cost: " + ", ".join(f"{e} {t:.0f}" for e, t in zip(events, totals)))
    print("  ".join(f"{e:>9}" for e in events) + "  function")
    for values, name in sorted(rows, key=lambda r: -r[0][-1])[: args.top]:
        print("  ".join(f"{v:9.1f}" for v in values) + f"  {name[:150]}")


if __name__ == "__main__":
    main()
