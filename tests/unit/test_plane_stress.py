"""Multi-process tests of the shared-memory state plane: real processes, attached by name like workers.

Each test is bounded in time (the whole file runs in well under a minute on 2 cores). Children are forked
and then ``Plane.attach`` by name, as fork+exec'd workers do; they never use the parent's mapping.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time

import pytest
from a3s_gateway.shared.plane import Plane, PlaneLayout

CTX = mp.get_context("fork")
LAYOUT = PlaneLayout(max_workers=8, max_backends=16, max_routers=8, max_services=8, ratelimit_entries=256,
                     max_breakers=8, sticky_entries=64, max_limiters=8)


@pytest.fixture
def plane(request):
    p = Plane.create(LAYOUT, tag="s" + request.node.name.replace("_", "")[-20:].replace("[", "").replace("]", ""))
    yield p
    p.close()
    p.unlink()


def start_workers(plane: Plane, target, n: int, *args) -> list:
    """Start n children target(name, slot, go, *args); give each its slot, then let them attach."""
    go = CTX.Event()
    procs = []
    for slot in range(n):
        pr = CTX.Process(target=target, args=(plane.name, slot, go, *args), daemon=True)
        pr.start()
        plane.set_worker(slot, pr.pid)
        procs.append(pr)
    go.set()
    return procs


def join_all(procs, timeout=20.0):
    deadline = time.monotonic() + timeout
    for pr in procs:
        pr.join(max(0.1, deadline - time.monotonic()))
        if pr.is_alive():
            pr.kill()
            pytest.fail(f"child {pr.pid} did not finish in time")
        assert pr.exitcode == 0, f"child {pr.pid} exit code {pr.exitcode}"


# ---------------------------------------------------------------- in-flight + fold
def _hold_inflight(name, slot, go, ready, stop, picks):
    go.wait()
    p = Plane.attach(name, worker_slot=slot)
    for _ in range(slot + 1):
        p.inflight_inc(0)
        p.record(0, 0, 0, 200, 10, 100)
    p.heartbeat()
    ready.release()
    # poll a plain shared byte: a multiprocessing.Event (a POSIX-semaphore condition) wedges its set()
    # for good when a waiter is SIGKILLed, which is exactly what this test does to worker 3
    deadline = time.monotonic() + 20
    while not stop.value and time.monotonic() < deadline:
        time.sleep(0.005)
    # while the others hold requests on backend 0, least-connections picks backend 1
    picks[slot] = p.least_connections([0, 1])
    for _ in range(slot + 1):
        p.inflight_dec(0)
    p.close()


def test_inflight_sums_across_processes_and_fold_drops_dead_share(plane):
    ready, stop = CTX.Semaphore(0), CTX.RawValue("b", 0)
    picks = CTX.Array("q", [-1] * 4)
    procs = start_workers(plane, _hold_inflight, 4, ready, stop, picks)
    for _ in range(4):
        assert ready.acquire(timeout=10)
    assert plane.inflight(0) == 1 + 2 + 3 + 4
    before = plane.totals()
    assert before["backends"][0]["2xx"] == 10 and before["routers"][0]["bytes_out"] == 1000
    assert all(plane.last_heartbeat(s) > 0 for s in range(4))

    os.kill(procs[3].pid, signal.SIGKILL)  # dies with 4 requests in flight
    procs[3].join(10)
    assert plane.inflight(0) == 10  # not folded yet: still counted
    plane.fold_worker(3)
    assert plane.inflight(0) == 6  # the dead worker's share is gone
    after = plane.totals()
    assert after["backends"] == before["backends"] and after["routers"] == before["routers"]
    assert after["inflight"] == {0: 6}

    stop.value = 1
    join_all(procs[:3])
    assert list(picks[:3]) == [1, 1, 1]
    assert plane.inflight(0) == 0
    assert plane.totals()["backends"][0]["2xx"] == 10  # monotonic across the death


# ---------------------------------------------------------------- rate limit accuracy
RATE, BURST, SECONDS = 100.0, 50.0, 3.0


def _flood(name, slot, go, t0, admitted, calls, span):
    go.wait()
    p = Plane.attach(name, worker_slot=slot)
    n = m = 0
    while time.monotonic() < t0:
        pass
    end = t0 + SECONDS
    first = last = 0.0
    while True:
        now = time.monotonic()
        if now >= end:
            break
        ok, remaining, retry = p.ratelimit_take(0, b"203.0.113.7", RATE, BURST, now)
        first, last = first or now, now
        m += 1
        if ok:
            n += 1
        else:
            assert remaining == 0 and retry > 0
    admitted[slot] = n
    calls[slot] = m
    span[2 * slot], span[2 * slot + 1] = first, last
    p.close()


def test_ratelimit_accuracy_across_4_processes(plane):
    admitted, calls, span = CTX.Array("q", 4), CTX.Array("q", 4), CTX.Array("d", 8)
    t0 = time.monotonic() + 0.5
    procs = start_workers(plane, _flood, 4, t0, admitted, calls, span)
    join_all(procs, timeout=SECONDS + 15)
    total = sum(admitted)
    # the bucket starts full at the first call of any process and refills until the last: on a busy box the
    # children may start after t0, so the window is the one they saw, not SECONDS
    window = max(span[1::2]) - min(t for t in span[0::2] if t)
    expected = BURST + RATE * window
    print(f"\nrate limit: admitted {total} of {sum(calls)} calls in {window:.3f} s, expected {expected:.0f} "
          f"({(total - expected) / expected:+.2%}); per worker {list(admitted)}")
    assert abs(total - expected) <= 0.05 * expected
    assert sum(1 for a in admitted if a) >= 2  # the limit was shared, not won by one process


# ---------------------------------------------------------------- circuit breaker
COOLDOWN = 1.0


def _breaker(name, slot, go, barrier, out):
    go.wait()
    p = Plane.attach(name, worker_slot=slot)
    barrier.wait(10)
    for _ in range(2):  # 4 processes x 2 failures reach the threshold of 8 only together
        p.breaker_record(0, False, time.monotonic(), 8, 1)
    barrier.wait(10)
    out[slot * 4 + 0] = int(p.breaker_state(0) == "open" and not p.breaker_allow(0, time.monotonic(), COOLDOWN))
    time.sleep(COOLDOWN + 0.05)
    barrier.wait(10)
    wins, end = 0, time.monotonic() + 0.3  # all four race for the half-open trial
    while time.monotonic() < end:
        if p.breaker_allow(0, time.monotonic(), COOLDOWN):
            wins += 1
    out[slot * 4 + 1] = wins
    barrier.wait(10)
    if wins:
        p.breaker_record(0, True, time.monotonic(), 8, 1)  # the trial succeeded
    barrier.wait(10)
    out[slot * 4 + 2] = int(p.breaker_state(0) == "closed" and p.breaker_allow(0, time.monotonic(), COOLDOWN))
    p.close()


def test_breaker_trips_across_processes_and_admits_exactly_one_trial(plane):
    out = CTX.Array("q", 16)
    procs = start_workers(plane, _breaker, 4, CTX.Barrier(4), out)
    join_all(procs)
    assert [out[s * 4] for s in range(4)] == [1, 1, 1, 1]  # open in every worker
    wins = [out[s * 4 + 1] for s in range(4)]
    assert sum(wins) == 1, f"half-open trials admitted per worker: {wins}"
    assert [out[s * 4 + 2] for s in range(4)] == [1, 1, 1, 1]  # closed again everywhere
    assert plane.snapshot()["breakers"][0]["trips"] == 1


# ---------------------------------------------------------------- sticky
def _sticky(name, slot, go, barrier, out):
    go.wait()
    p = Plane.attach(name, worker_slot=slot)
    now = time.monotonic()
    if slot == 0:
        p.sticky_bind(b"svc1:cookie-abc", 5, now, 30.0)
        p.sticky_bind(b"svc1:short", 6, now, 0.2)
    barrier.wait(10)
    out[slot * 3] = p.sticky_get(b"svc1:cookie-abc", time.monotonic()) or -1
    out[slot * 3 + 1] = p.sticky_get(b"svc1:short", time.monotonic()) or -1
    time.sleep(0.3)
    out[slot * 3 + 2] = p.sticky_get(b"svc1:short", time.monotonic()) or -1
    p.close()


def test_sticky_binding_visible_across_processes_with_ttl(plane):
    out = CTX.Array("q", 12)
    join_all(start_workers(plane, _sticky, 4, CTX.Barrier(4), out))
    assert [out[s * 3] for s in range(4)] == [5] * 4
    assert [out[s * 3 + 1] for s in range(4)] == [6] * 4
    assert [out[s * 3 + 2] for s in range(4)] == [-1] * 4  # expired everywhere
    assert plane.sticky_get(b"svc1:cookie-abc", time.monotonic()) == 5


# ---------------------------------------------------------------- torn reads
PATTERN = 0x0101010101010101
STRESS_S = 1.5


def _writer(name, slot, go, t_end):
    go.wait()
    p = Plane.attach(name, worker_slot=slot)
    inf = p._inf  # the raw primitive under every counter: an aligned 8-byte memoryview store
    cell = 8 * p.layout.max_workers + slot  # backend 8, this worker's cell
    k = 0
    while time.monotonic() < t_end:
        for _ in range(1000):
            k += 1
            inf[cell] = (k % 0x7F + 1) * PATTERN  # every byte equal: a torn value would show
            p.inflight_inc(1)
            p.record(0, 0, 1, 200, 1, 1)
            p.inflight_dec(1)
    inf[cell] = 0
    p.close()


def _reader(name, slot, go, t_end, nwriters, bad, reads):
    go.wait()
    p = Plane.attach(name)
    inf = p._inf
    W = p.layout.max_workers
    n, last_2xx = 0, 0
    while time.monotonic() < t_end:
        for _ in range(200):
            for w in range(nwriters):
                v = inf[8 * W + w]
                b = v.to_bytes(8, "little", signed=True)
                if v < 0 or b != bytes([b[0]]) * 8:
                    bad[slot] += 1
            s = p.inflight(1)
            if not 0 <= s <= nwriters:
                bad[slot] += 1
            n += 1
        t = p.totals()["routers"].get(0, {}).get("2xx", 0)
        if t < last_2xx:
            bad[slot] += 1
        last_2xx = t
    reads[slot] = n
    p.close()


def test_no_torn_or_negative_reads_under_concurrent_writes(plane):
    nwriters = 2
    t_end = time.monotonic() + 0.3 + STRESS_S
    bad, reads = CTX.Array("q", 4), CTX.Array("q", 4)
    go = CTX.Event()
    procs = []
    for slot in range(nwriters):
        pr = CTX.Process(target=_writer, args=(plane.name, slot, go, t_end), daemon=True)
        pr.start()
        plane.set_worker(slot, pr.pid)
        procs.append(pr)
    for r in range(2):
        pr = CTX.Process(target=_reader, args=(plane.name, r, go, t_end, nwriters, bad, reads), daemon=True)
        pr.start()
        procs.append(pr)
    go.set()
    join_all(procs, timeout=STRESS_S + 15)
    print(f"\ntorn-read stress: {sum(reads)} read rounds, {sum(bad)} bad")
    assert sum(reads) > 1000
    assert sum(bad) == 0
    assert plane.inflight(1) == 0


# ---------------------------------------------------------------- fcntl lock vs kill -9
def _hold_lock(name, slot, go, held, key_bucket_lock):
    go.wait()
    p = Plane.attach(name, worker_slot=slot)
    p._locks.acquire(0)  # breaker 0's lock
    p._locks.acquire(key_bucket_lock)  # a sticky stripe
    held.set()
    time.sleep(60)


def test_fcntl_lock_is_released_when_its_holder_is_killed(plane):
    st = plane.sticky
    b0 = st._where(b"svc:victim")[1]
    stripe = st.lock_base + b0 // 8
    held = CTX.Event()
    (pr,) = start_workers(plane, _hold_lock, 1, held, stripe)
    assert held.wait(10)
    assert not plane._locks.acquire(0, blocking=False)  # really held by the child
    assert not plane._locks.acquire(stripe, blocking=False)
    os.kill(pr.pid, signal.SIGKILL)
    pr.join(10)
    deadline = time.monotonic() + 5
    while not plane._locks.acquire(0, blocking=False):
        assert time.monotonic() < deadline, "lock still held after its holder was killed"
        time.sleep(0.01)
    plane._locks.release(0)
    # the real paths that take those locks go through (a hang here would be the deadlock)
    for _ in range(3):
        plane.breaker_record(0, False, 0.0, 3, 1)
    assert plane.breaker_state(0) == "open"
    assert plane.breaker_allow(0, 10.0, 1.0)
    plane.sticky_bind(b"svc:victim", 3, 0.0, 10.0)
    assert plane.sticky_get(b"svc:victim", 1.0) == 3
    plane.fold_worker(0)
