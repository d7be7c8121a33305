"""Micro-benchmark of the shared-memory state plane: nanoseconds per call, one worker, 4 worker rows live.

    /work/venv/bin/python loadtest/plane_bench.py [iterations]

Prints (does not assert) the cost of every hot-path call, of an fcntl lock/unlock pair (what a locked
rate-limit bucket would add per request), of token-meter's pre-charge and reconcile, and of a typical
request's plane work: rate-limit take + least-connections over 4 backends + in-flight inc/dec + record +
passive success + breaker allow/record.
"""

from __future__ import annotations

import os
import sys
import time

from a3s_gateway.shared.plane import Plane, PlaneLayout


def bench(label: str, fn, n: int, overhead: float = 0.0) -> float:
    fn()
    t = time.perf_counter_ns()
    for _ in range(n):
        fn()
    ns = (time.perf_counter_ns() - t) / n - overhead
    print(f"  {label:<52} {ns:8.0f} ns")
    return ns


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    master = Plane.create(PlaneLayout(max_workers=16), tag="bench")
    try:
        for slot in range(4):
            master.set_worker(slot, os.getpid())
        p = Plane.attach(master.name, worker_slot=0)
        backends = [0, 1, 2, 3]
        now = time.monotonic()
        keys = [b"10.0.%d.%d" % (i // 256, i % 256) for i in range(4096)]
        ki = iter(range(1 << 62))
        tokens = [(b"m|key:a", 60.0, 1e15), (b"m|global", 60.0, 1e15)]
        print(f"plane micro-benchmark, {n} iterations, Python {sys.version.split()[0]}")
        empty = bench("(empty lambda call, subtracted below)", lambda: None, n)
        for label, fn in [
            ("heartbeat()", p.heartbeat),
            ("inflight_inc(b) + inflight_dec(b)", lambda: (p.inflight_inc(1), p.inflight_dec(1))),
            ("inflight(b)", lambda: p.inflight(1)),
            ("least_connections(4 backends)", lambda: p.least_connections(backends)),
            ("record(router, service, backend, 200, ...)", lambda: p.record(1, 2, 3, 200, 512, 4096)),
            ("is_healthy(b, now)", lambda: p.is_healthy(1, now)),
            ("passive_success(b)", lambda: p.passive_success(1)),
            ("ratelimit_take, one hot key (mostly rejected)", lambda: p.ratelimit_take(0, b"hot", 1e3, 50, now)),
            ("ratelimit_take, 4096 keys (admitted)",
             lambda: p.ratelimit_take(1, keys[next(ki) & 4095], 1e9, 1e9, now)),
            ("breaker_allow(i) closed", lambda: p.breaker_allow(0, now, 5.0)),
            ("breaker_record(i, success)", lambda: p.breaker_record(0, True, now, 5, 1)),
            ("sticky_get(key)", lambda: p.sticky_get(b"svc:cookie", now)),
            ("sticky_bind(key) refresh, same backend", lambda: p.sticky_bind(b"svc:cookie", 2, now, 60.0)),
            ("fcntl lock + unlock pair (rare transitions only)",
             lambda: (p._locks.acquire(5), p._locks.release(5))),
            ("token_charge, 2 keys (token-meter's pre-charge, locked)",
             lambda: p.token_charge(tokens, 30, time.time())),
            ("token_settle, 1 key (token-meter's reconcile)",
             lambda: p.token_settle(tokens[0][0], 60.0, 30, time.time(), 30, time.time())),
        ]:
            bench(label, fn, n, empty)

        def request() -> None:
            p.ratelimit_take(0, keys[next(ki) & 4095], 1e9, 1e9, now)
            if p.breaker_allow(0, now, 5.0):
                b = backends[p.least_connections(backends)]
                p.inflight_inc(b)
                p.inflight_dec(b)
                p.passive_success(b)
                p.breaker_record(0, True, now, 5, 1)
                p.record(1, 2, b, 200, 512, 4096)

        print("per request:")
        bench("rate limit + breaker + least-conn + in-flight + record", request, n // 4, empty)
        print(f"  totals() over 4 rows: {timed(master.totals) * 1e3:.1f} ms; "
              f"fold_worker(): {timed(lambda: master.fold_worker(3)) * 1e3:.1f} ms")
        p.close()
    finally:
        master.close()
        master.unlink()


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
