"""Single-process tests of the shared-memory state plane (multi-process ones: test_plane_stress.py)."""

from __future__ import annotations

import errno
import itertools
import multiprocessing as mp
import os

import posix_ipc
import pytest
from a3s_gateway.shared.errors import GatewayError
from a3s_gateway.shared.plane import Plane, PlaneError, PlaneLayout, SlotAllocator, segment_sizes
from a3s_gateway.shared.plane import segments as segmod
from a3s_gateway.shared.plane.ejection import EjectionPolicy, success_rate_outliers
from a3s_gateway.shared.plane.plane import SEGMENTS

LEGACY = EjectionPolicy(base=100.0, cap=100.0, jitter=0.0, max_percent=100, interval=float("inf"))

SMALL = PlaneLayout(max_workers=8, max_backends=16, max_routers=8, max_services=8, ratelimit_entries=64,
                    max_breakers=8, sticky_entries=16, max_limiters=8)
_tags = itertools.count()


def shm_files(prefix: str) -> list[str]:
    return [f for f in os.listdir("/dev/shm") if f.startswith(prefix + ".")]


@pytest.fixture
def plane():
    p = Plane.create(SMALL, tag=f"t{os.getpid()}x{next(_tags)}")
    yield p
    p.close()
    p.unlink()


def worker(p: Plane, slot: int) -> Plane:
    p.set_worker(slot, os.getpid())
    return Plane.attach(p.name, worker_slot=slot)


# ---------------------------------------------------------------- lifecycle
def test_create_attach_unlink_leaves_nothing():
    p = Plane.create(SMALL, tag="life")
    assert p.name == f"a3s-gw.{os.getpid()}.life"
    assert sorted(shm_files(p.name)) == sorted(f"{p.name}.{s}" for s in SEGMENTS)
    w = Plane.attach(p.name, worker_slot=0)
    assert w.layout == SMALL
    ro = Plane.attach("/" + p.name)
    w.close()
    ro.close()
    p.close()
    assert len(p.unlink()) == len(SEGMENTS)
    assert shm_files(p.name) == []
    assert p.unlink() == []  # idempotent
    with pytest.raises(PlaneError, match="does not exist"):
        Plane.attach(p.name, worker_slot=0)


def test_plane_error_is_gateway_error():
    assert issubclass(PlaneError, GatewayError)
    with pytest.raises(PlaneError):
        PlaneLayout(max_workers=0)
    with pytest.raises(PlaneError):
        Plane.attach("not-a-plane", worker_slot=0)


def test_layout_rounding_and_alignment():
    lay = PlaneLayout(ratelimit_entries=10, sticky_entries=1, max_workers=3)
    assert lay.ratelimit_entries == 16 and lay.sticky_entries == 8
    assert PlaneLayout.from_tuple(lay.as_tuple()) == lay
    for size in segment_sizes(lay).values():
        assert size % 8 == 0


def test_full_dev_shm_fails_at_create_with_clear_message(monkeypatch):
    def no_space(fd, off, size):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(segmod.os, "posix_fallocate", no_space)
    with pytest.raises(PlaneError) as ei:
        Plane.create(SMALL, tag="full")
    msg = str(ei.value)
    assert "/dev/shm" in msg and "bytes" in msg and "No space" in msg
    assert shm_files(f"a3s-gw.{os.getpid()}.full") == []


def test_create_twice_in_one_process_needs_a_tag(plane):
    with pytest.raises(PlaneError, match="already created"):
        Plane.create(SMALL, tag=plane.name.split(".")[-1])


def _leave_segments(tag):
    Plane.create(SMALL, tag=tag)
    os._exit(0)  # no unlink, no atexit: like kill -9


def test_cleanup_stale_removes_dead_masters_segments(plane):
    child = mp.get_context("fork").Process(target=_leave_segments, args=("stale",))
    child.start()
    child.join(10)
    name = f"a3s-gw.{child.pid}.stale"
    assert len(shm_files(name)) == len(SEGMENTS)
    removed = Plane.cleanup_stale()
    assert {f"/{name}.{s}" for s in SEGMENTS} <= set(removed)
    assert shm_files(name) == []
    assert shm_files(plane.name)  # the live plane is kept


def test_cleanup_stale_removes_leftovers_of_a_previous_master_with_our_pid():
    # e.g. a container master that is pid 1 again after a kill -9
    name = f"/a3s-gw.{os.getpid()}.header"
    posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=4096).close_fd()
    assert name in Plane.cleanup_stale()
    assert not os.path.exists("/dev/shm" + name)


def test_started_elsewhen_detects_pid_reuse(plane):
    from a3s_gateway.shared.plane.plane import _started_elsewhen

    assert not _started_elsewhen(plane.name, os.getpid())
    from a3s_gateway.shared.plane.segments import process_start_time

    if process_start_time(1) == process_start_time(os.getpid()):
        pytest.skip("pid 1 started in the same clock tick")
    assert _started_elsewhen(plane.name, 1)  # a live pid with another start time: our pid was reused


def test_readonly_and_role_checks(plane):
    ro = Plane.attach(plane.name)
    w = worker(plane, 0)
    try:
        for call in (lambda: ro.heartbeat(), lambda: ro.record(0, 0, 0, 200, 1, 1),
                     lambda: ro.sticky_bind(b"k", 1, 0.0, 1.0), lambda: ro.set_healthy(0, False),
                     lambda: w.fold_worker(0), lambda: w.set_worker(1, 1), lambda: plane.heartbeat(),
                     lambda: plane.inflight_inc(0)):
            with pytest.raises(PlaneError):
                call()
        assert ro.inflight(0) == 0 and ro.is_healthy(0)
        with pytest.raises(PlaneError):
            Plane.attach(plane.name, worker_slot=SMALL.max_workers)
    finally:
        ro.close()
        w.close()


# ---------------------------------------------------------------- slots
def test_slot_allocator_stable_and_reuse_after_generation():
    a = SlotAllocator(3, "backend")
    r1 = a.assign(["a", "b"], generation=1)
    assert r1.indices == {"a": 0, "b": 1} and r1.fresh == (0, 1)
    r2 = a.assign(["b", "a", "c"], generation=2)
    assert r2.indices == {"a": 0, "b": 1, "c": 2} and r2.fresh == (2,)
    r3 = a.assign(["a", "c"], generation=3)  # b released at 3
    assert r3.released == (1,)
    with pytest.raises(PlaneError, match="no free backend slot"):
        a.assign(["a", "c", "d"], generation=4)  # 1 is not reusable before generation 3 drained
    r5 = a.assign(["a", "c", "b"], generation=5)  # b comes back: same index, not fresh
    assert r5.indices["b"] == 1 and r5.fresh == ()
    a.assign(["a", "c"], generation=6)
    assert a.retire(5) == []
    assert a.retire(6) == [1]
    r7 = a.assign(["a", "c", "d"], generation=7)
    assert r7.indices["d"] == 1 and r7.fresh == (1,)
    r8 = a.assign(["a", "c", "d", "b"][:3], generation=8)
    assert r8.indices == {"a": 0, "c": 2, "d": 1}


def test_reset_zeroes_reallocated_slot_state(plane):
    w = worker(plane, 0)
    try:
        w.record(1, 1, 2, 503, 10, 10)
        w.inflight_inc(2)
        assert w.outlier_eject(0, 2, [2], 0.0, "passive_health", LEGACY)
        plane.set_healthy(2, False)
        for _ in range(3):
            w.breaker_record(1, False, 0.0, 3, 1)
        assert w.breaker_state(1) == "open" and not w.is_healthy(2, 1.0)
        w.inflight_dec(2)
        plane.reset_backend(2)
        plane.reset_router(1)
        plane.reset_service(1)
        plane.reset_breaker(1)
        assert w.is_healthy(2, 1.0) and w.breaker_state(1) == "closed" and w.breaker_allow(1, 0.0, 5)
        t = plane.totals()
        assert t["routers"] == {} and t["services"] == {} and t["backends"] == {}
        ok1, *_ = w.ratelimit_take(3, b"k", 1.0, 1.0, 0.0)
        ok2, *_ = w.ratelimit_take(3, b"k", 1.0, 1.0, 0.0)
        assert ok1 and not ok2
        plane.reset_limiter(3)
        assert w.ratelimit_take(3, b"k", 1.0, 1.0, 0.0)[0]
    finally:
        w.close()


# ---------------------------------------------------------------- counters, in-flight, workers
def test_counters_inflight_and_fold(plane):
    w0, w1 = worker(plane, 0), worker(plane, 1)
    try:
        w0.record(0, 1, 2, 200, 100, 1000)
        w1.record(0, -1, 2, 404, 5, 6)
        w1.record(-1, -1, 3, 0, 1, 0)
        w0.inflight_inc(2)
        w1.inflight_inc(2)
        w1.inflight_inc(3)
        assert plane.inflight(2) == 2 and w0.inflight(3) == 1
        assert w0.least_connections([2, 3]) == 1
        assert w0.least_connections([3, 2, 5]) == 2
        assert w0.least_connections([5, 7]) == 0  # tie: lowest position
        with pytest.raises(ValueError):
            w0.least_connections([])
        t = plane.totals()
        assert t["routers"][0]["2xx"] == 1 and t["routers"][0]["4xx"] == 1
        assert t["routers"][0]["bytes_in"] == 105 and t["routers"][0]["bytes_out"] == 1006
        assert t["backends"][3]["err"] == 1 and t["services"] == {1: t["services"][1]}
        assert t["inflight"] == {2: 2, 3: 1}
        plane.fold_worker(1)  # worker 1 died
        t2 = plane.totals()
        assert t2["routers"] == t["routers"] and t2["backends"] == t["backends"]
        assert t2["inflight"] == {2: 1}
        assert plane.worker_pid(1) == 0
    finally:
        w0.close()
        w1.close()


def test_heartbeat_and_worker_rows(plane):
    w = worker(plane, 2)
    try:
        before = plane.last_heartbeat(2)
        w.heartbeat()
        assert plane.last_heartbeat(2) >= before > 0
        w.report_generation(7)
        assert plane.worker_generation(2) == 7
        snap = plane.snapshot()
        assert [r["slot"] for r in snap["workers"]] == [2]
        assert snap["workers"][0]["pid"] == os.getpid() and snap["workers"][0]["generation"] == 7
        plane.set_worker(2, os.getpid())  # restart in the same slot
        assert plane.snapshot()["workers"][0]["restarts"] == 1
    finally:
        w.close()


def test_snapshot_names_and_state(plane):
    w = worker(plane, 0)
    try:
        plane.set_name("backends", 4, "http://10.0.0.1:8080")
        plane.set_name("breakers", 2, "api-breaker")
        w.inflight_inc(4)
        for _ in range(2):
            w.breaker_record(2, False, 0.0, 2, 1)
        ro = Plane.attach(plane.name)
        snap = ro.snapshot(now=1.0)
        ro.close()
        (b,) = snap["backends"]
        assert b["name"] == "http://10.0.0.1:8080" and b["inflight"] == 1 and b["healthy"]
        (br,) = snap["breakers"]
        assert br["name"] == "api-breaker" and br["state"] == "open" and br["trips"] == 1
        assert snap["ratelimit"]["entries"] == 64 and snap["sticky"]["entries"] == 16
    finally:
        w.close()


# ---------------------------------------------------------------- health
def test_failure_streaks_count_across_workers_and_a_success_ends_them(plane):
    w0, w1 = worker(plane, 0), worker(plane, 1)
    try:
        assert w0.outlier_failure(0, True) == (1, 1)
        assert w1.outlier_failure(0, True) == (2, 2)
        w0.passive_success(0)  # ends the 5xx streak only
        assert w1.outlier_failure(0, False) == (1, 0)  # a plain 500 ends the gateway streak
        assert w0.outlier_failure(0, True) == (2, 1)
        w1.outlier_restart(0)
        assert w0.outlier_failure(0, True) == (1, 1)
        assert w0.is_healthy(0, 10.0)
        plane.set_healthy(0, False)
        assert not w1.is_healthy(0, 100.0)
        plane.set_healthy(0, True)
        assert w1.is_healthy(0, 100.0)
    finally:
        w0.close()
        w1.close()


def test_ejection_time_grows_with_the_multiplier_up_to_the_cap(plane):
    policy = EjectionPolicy(base=1.0, cap=2.5, jitter=0.0, max_percent=100, interval=5.0)
    w = worker(plane, 0)
    try:
        lengths = []
        now = 0.0
        for _ in range(4):
            assert w.outlier_eject(3, 7, [7, 8], now, "consecutive_5xx", policy)
            assert not w.outlier_eject(3, 7, [7, 8], now, "consecutive_5xx", policy)  # already out
            state = plane.health.state(7, now, 1)
            lengths.append(state["last_ejection_s"])
            assert not w.is_healthy(7, now) and w.is_healthy(7, now + state["last_ejection_s"])
            now += state["last_ejection_s"]
        assert lengths == [1.0, 2.0, 2.5, 2.5]
        assert w.ejections(7)["consecutive_5xx"] == 4
        plane.outlier_decay(3, [7, 8], now + 4.9, 5.0)
        assert plane.health.state(7, now, 1)["ejection_multiplier"] == 4
        plane.outlier_decay(3, [7, 8], now + 5.0, 5.0)
        assert plane.health.state(7, now, 1)["ejection_multiplier"] == 3
    finally:
        w.close()


def test_max_ejection_percent_keeps_enough_backends_in(plane):
    ten = EjectionPolicy(base=10.0, cap=10.0, jitter=0.0, max_percent=10, interval=5.0)
    assert [ten.limit(n) for n in (1, 2, 9, 10, 25)] == [0, 1, 1, 1, 2]
    assert EjectionPolicy(1.0, 1.0, 0.0, 0, 1.0).limit(5) == 0 and LEGACY.limit(1) == 1
    w = worker(plane, 0)
    try:
        peers = list(range(0, 10))
        assert w.outlier_eject(1, 0, peers, 0.0, "consecutive_5xx", ten)
        assert not w.outlier_eject(1, 1, peers, 0.0, "consecutive_5xx", ten)
        assert w.outlier_eject(1, 1, peers, 10.0, "consecutive_5xx", ten)  # the first one is back
        assert not w.outlier_eject(2, 12, [12], 0.0, "consecutive_5xx", ten)  # a lone backend stays in
    finally:
        w.close()


def test_success_rate_outliers_are_below_mean_minus_factor_stdev():
    samples = {b: (100, 0) for b in range(4)} | {4: (100, 50)}
    assert success_rate_outliers(samples, 5, 100, 1.9) == [4]
    assert success_rate_outliers(samples, 6, 100, 1.9) == []            # fewer hosts than minimum_hosts
    assert success_rate_outliers(samples | {4: (99, 50)}, 5, 100, 1.9) == []   # under request_volume: not a host
    assert success_rate_outliers({b: (100, 3) for b in range(5)}, 5, 100, 1.9) == []


# ---------------------------------------------------------------- rate limit
def test_ratelimit_bucket_single_process(plane):
    w = worker(plane, 0)
    try:
        res = [w.ratelimit_take(0, b"1.2.3.4", 10.0, 5.0, 100.0) for _ in range(7)]
        assert [r[0] for r in res] == [True] * 5 + [False] * 2
        assert [r[1] for r in res[:5]] == [4, 3, 2, 1, 0]
        _, rem, retry = res[-1]
        assert rem == 0 and retry == pytest.approx(0.1)
        assert w.ratelimit_take(0, b"1.2.3.4", 10.0, 5.0, 100.1)[0]  # one token refilled
        assert not w.ratelimit_take(0, b"1.2.3.4", 10.0, 5.0, 100.1)[0]
        assert w.ratelimit_take(0, b"other", 10.0, 5.0, 100.1)[0]  # keys are independent
        assert w.ratelimit_take(1, b"1.2.3.4", 10.0, 5.0, 100.1)[0]  # limiters are independent
        # a long idle period refills to burst, never beyond
        got = sum(w.ratelimit_take(0, b"1.2.3.4", 10.0, 5.0, 1000.0)[0] for _ in range(20))
        assert got == 5
    finally:
        w.close()


def test_ratelimit_table_is_bounded_and_evicts_lru(plane):
    w = worker(plane, 0)
    try:
        for i in range(1000):  # 1000 keys in a 64-entry table
            assert w.ratelimit_take(0, b"key%d" % i, 1.0, 1.0, float(i))[0]
        occ = plane.snapshot(now=1000.0)["ratelimit"]
        assert occ["used"] <= 64 and occ["entries"] == 64
        # the most recent key is still limited; an evicted old key starts with a full bucket again
        assert not w.ratelimit_take(0, b"key999", 1.0, 1.0, 999.0)[0]
        assert w.ratelimit_take(0, b"key0", 1.0, 1.0, 999.0)[0]
    finally:
        w.close()


def test_ratelimit_rate_change_reanchors(plane):
    w = worker(plane, 0)
    try:
        assert sum(w.ratelimit_take(0, b"k", 1.0, 2.0, 0.0)[0] for _ in range(5)) == 2
        assert sum(w.ratelimit_take(0, b"k", 50.0, 3.0, 0.0)[0] for _ in range(5)) == 3
    finally:
        w.close()


# ---------------------------------------------------------------- breaker
def test_breaker_state_machine(plane):
    w0, w1 = worker(plane, 0), worker(plane, 1)
    try:
        assert w0.breaker_state(0) == "closed" and w0.breaker_allow(0, 0.0, 10.0)
        w0.breaker_record(0, False, 1.0, 3, 2)
        w1.breaker_record(0, False, 1.0, 3, 2)
        w0.breaker_record(0, True, 1.0, 3, 2)  # success resets the consecutive count
        w0.breaker_record(0, False, 1.0, 3, 2)
        w1.breaker_record(0, False, 1.0, 3, 2)
        assert w0.breaker_state(0) == "closed"
        w1.breaker_record(0, False, 2.0, 3, 2)
        assert w0.breaker_state(0) == "open"
        assert not w0.breaker_allow(0, 5.0, 10.0) and not w1.breaker_allow(0, 11.9, 10.0)
        # w0 and w1 share this process, so the half-open claim is this process's
        assert w1.breaker_allow(0, 12.0, 10.0)
        assert w1.breaker_state(0) == "half-open"
        w1.breaker_record(0, True, 12.1, 3, 2)  # 1 of 2 successes: claim released, still half-open
        assert w1.breaker_state(0) == "half-open"
        assert w0.breaker_allow(0, 12.2, 10.0)
        w0.breaker_record(0, False, 12.3, 3, 2)  # trial failed: open again
        assert w0.breaker_state(0) == "open" and not w0.breaker_allow(0, 20.0, 10.0)
        assert w0.breaker_allow(0, 22.4, 10.0)
        w0.breaker_record(0, True, 22.5, 3, 2)
        assert w0.breaker_allow(0, 22.6, 10.0)
        w0.breaker_record(0, True, 22.7, 3, 2)
        assert w0.breaker_state(0) == "closed" and w1.breaker_allow(0, 22.8, 10.0)
        w1.breaker_record(0, False, 23.0, 3, 2)  # the count restarted at close
        assert w1.breaker_state(0) == "closed"
    finally:
        w0.close()
        w1.close()


def test_breaker_trial_expires_if_never_recorded(plane):
    w = worker(plane, 0)
    try:
        for _ in range(2):
            w.breaker_record(0, False, 0.0, 2, 1)
        assert w.breaker_allow(0, 5.0, 5.0)  # trial claimed ...
        assert w.breaker_state(0) == "half-open"
        # ... but this process claimed it; a trial that is never recorded expires after cooldown
        assert w.breaker_allow(0, 10.0, 5.0)
    finally:
        w.close()


# ---------------------------------------------------------------- sticky
def test_sticky_bind_get_ttl_and_rebind(plane):
    w = worker(plane, 0)
    try:
        assert w.sticky_get(b"svc:abc", 0.0) is None
        w.sticky_bind(b"svc:abc", 5, 0.0, 10.0)
        assert w.sticky_get(b"svc:abc", 9.9) == 5
        assert w.sticky_get(b"svc:abc", 10.0) is None  # expired
        w.sticky_bind(b"svc:abc", 5, 9.0, 10.0)  # refresh (lock-free path)
        assert w.sticky_get(b"svc:abc", 18.0) == 5
        w.sticky_bind(b"svc:abc", 6, 9.0, 10.0)  # re-pick after the backend went away
        assert w.sticky_get(b"svc:abc", 10.0) == 6
        w.sticky_unbind(b"svc:abc")
        assert w.sticky_get(b"svc:abc", 10.0) is None
    finally:
        w.close()


def test_sticky_table_full_evicts_soonest_expiring(plane):
    w = worker(plane, 0)
    try:
        keys = [b"client-%d" % i for i in range(200)]  # 16-entry table
        for i, k in enumerate(keys):
            w.sticky_bind(k, i % 7, 0.0, 100.0 + i)
        live = [k for k in keys if w.sticky_get(k, 1.0) is not None]
        assert 0 < len(live) <= 16
        assert keys[-1] in live  # the newest binding survived
        assert w.sticky_get(keys[-1], 1.0) == 199 % 7
        occ = plane.snapshot(now=1.0)["sticky"]
        assert occ["used"] <= 16
    finally:
        w.close()


def test_record_left_odd_by_a_killed_writer_is_skipped_then_repaired(plane):
    from a3s_gateway.shared.plane import sticky as st_mod

    w = worker(plane, 0)
    try:
        w.sticky_bind(b"k", 4, 0.0, 10.0)
        fp, b0 = w.sticky._where(b"k")
        e = b0 + w.sticky.q[b0 * st_mod.REC + st_mod.FP : (b0 + 8) * st_mod.REC : st_mod.REC].tolist().index(fp)
        q = w.sticky.q
        q[e * st_mod.REC + st_mod.SEQ] += 1  # a writer died between its two SEQ stores
        assert w.sticky_get(b"k", 1.0) is None  # readers give up after a bounded spin, never hang
        w.sticky_bind(b"k", 5, 1.0, 10.0)  # the next lock holder takes the odd entry over
        assert w.sticky_get(b"k", 2.0) == 5
        assert q[e * st_mod.REC + st_mod.SEQ] % 2 == 0
    finally:
        w.close()


# ---------------------------------------------------------------- traffic management (traffic.py)
def test_mirror_selection_is_one_counter_across_workers_and_retries_die_with_their_worker(plane):
    w0, w1 = worker(plane, 0), worker(plane, 1)
    try:
        chosen = [(w0 if n % 3 else w1).mirror_select(5, (20, 50)) for n in range(10)]
        assert chosen == [[0, 1], [], [1], [], [1], [0], [1], [], [1], []]   # Traefik's counter, over both workers
        w0.mirror_outcome(5, 0, "timeout")
        record = plane.traffic_totals()[5]
        assert record["total"] == 10
        assert (record["mirrors"][0]["chosen"], record["mirrors"][1]["chosen"]) == (2, 5)
        assert record["mirrors"][0]["timeout"] == 1
        w0.retry_change(5, 1)
        w1.retry_change(5, 2)
        assert plane.retry_active(5) == 3
        plane.fold_worker(1)
        assert plane.retry_active(5) == 1                    # a dead worker's retries give their budget back
        plane.reset_service(5)
        assert 5 not in plane.traffic_totals()
    finally:
        w0.close()
        w1.close()
