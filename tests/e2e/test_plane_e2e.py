"""The shared-memory plane through the real binary with 4 workers: one gateway, not N independent workers."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections import Counter

import httpx
from harness import BINARY, Gateway, one_service, wait_until


def fresh_get(g: Gateway, path: str, **kw) -> httpx.Response:
    """One request on a new connection (so the kernel spreads them over all workers)."""
    with httpx.Client() as c:
        return c.get(g.url + path, **kw)


def segments(plane: str) -> list[str]:
    return [f for f in os.listdir("/dev/shm") if f.startswith(plane.lstrip("/") + ".")]


def test_least_connections_counts_in_flight_requests_of_every_worker(gateway, backends):
    a, b = backends("a"), backends("b")
    g = gateway(one_service(a.url, b.url, strategy="least-connections"), workers=4)
    held = []
    t = threading.Thread(target=lambda: held.append(fresh_get(g, "/delay/4", timeout=15)))
    t.start()
    busy = wait_until(
        lambda: next((x.name for x in (a, b) if httpx.get(x.url + "/stats").json()["inflight"]), None),
        what="the slow request at a backend",
    )
    free = "b" if busy == "a" else "a"
    seen = Counter()
    workers = set()
    for _ in range(40):
        r = fresh_get(g, "/fast")
        seen[r.headers["x-backend"]] += 1
    t.join()
    # Per-worker counting would send about half of these to the busy backend from the 3 other workers.
    assert seen == {free: 40}, seen
    del workers


def test_sticky_cookie_is_honoured_by_every_worker(gateway, backends):
    a, b, c = backends("a"), backends("b"), backends("c")
    g = gateway(
        one_service(
            a.url, b.url, c.url, extra='[services.svc.load_balancer.sticky]\ncookie = "gw_sticky"\nttl = "1h"'
        ),
        workers=4,
    )
    first = fresh_get(g, "/")
    cookie = first.cookies.get("gw_sticky")
    assert cookie
    set_cookie = first.headers["set-cookie"]
    assert "Path=/" in set_cookie and "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie
    pinned = first.headers["x-backend"]
    got = {
        fresh_get(g, "/", headers={"Cookie": f"gw_sticky={cookie}"}).headers["x-backend"] for _ in range(50)
    }
    assert got == {pinned}
    # without the cookie, round-robin spreads requests again
    spread = {fresh_get(g, "/").headers["x-backend"] for _ in range(30)}
    assert len(spread) == 3


def test_sticky_binding_to_a_dead_backend_is_repicked(gateway, backends):
    a, b = backends("a"), backends("b")
    g = gateway(
        one_service(
            a.url,
            b.url,
            extra='[services.svc.load_balancer.sticky]\ncookie = "s"\n'
            '[services.svc.load_balancer.passive_health]\nmax_failures = 1\ncooldown = "60s"',
        ),
        workers=4,
    )
    first = fresh_get(g, "/")
    cookie, pinned = first.cookies["s"], first.headers["x-backend"]
    (a if pinned == "a" else b).stop()
    other = "b" if pinned == "a" else "a"
    # the first request after the death may fail (502) and marks the backend down for every worker
    wait_until(
        lambda: fresh_get(g, "/", headers={"Cookie": f"s={cookie}"}).headers.get("x-backend") == other,
        what="the sticky client moved to the live backend",
    )
    assert {fresh_get(g, "/", headers={"Cookie": f"s={cookie}"}).headers["x-backend"] for _ in range(20)} == {
        other
    }


def test_killed_worker_in_flight_counts_are_dropped(gateway, backends):
    from a3s_gateway.shared.plane import Plane

    b = backends("slow")
    g = gateway(one_service(b.url, strategy="least-connections"), workers=4)
    plane = Plane.attach(g.health()["plane"])
    results: list[object] = []

    def hold():
        try:
            results.append(fresh_get(g, "/delay/6", timeout=20).status_code)
        except httpx.HTTPError as e:
            results.append(e)

    threads = [threading.Thread(target=hold) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        wait_until(
            lambda: httpx.get(b.url + "/stats").json()["inflight"] == 8, what="8 requests at the backend"
        )
        assert plane.inflight(0) == 8
        victim = g.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: victim not in g.worker_pids() and len(g.worker_pids()) == 4, what="worker replaced"
        )
        for t in threads:
            t.join()
        failed = sum(1 for r in results if not isinstance(r, int))
        # the victim's share is gone from the sum; the rest completed and were released (a worker releases
        # its count just after writing the response, so poll briefly)
        wait_until(lambda: plane.inflight(0) == 0, 5, what="in-flight sum back to 0")
        assert 0 <= failed < 8
    finally:
        plane.close()


def test_segments_are_removed_on_sigterm(gateway, backends):
    g = gateway(one_service(backends().url), workers=2)
    name = g.health()["plane"]
    assert len(segments(name)) >= 8
    assert g.stop() == 0
    assert segments(name) == []


def test_segments_of_a_kill9ed_master_are_cleaned_by_the_next_start(tmp_path, backends):
    b = backends()
    g1 = Gateway(one_service(b.url), tmp_path, workers=2)
    name = g1.health()["plane"]
    workers = g1.worker_pids()
    g1.proc.kill()
    g1.proc.wait()
    for pid in workers:  # orphaned workers notice the master is gone and leave
        wait_until(lambda pid=pid: not os.path.exists(f"/proc/{pid}"), 35, what=f"orphan worker {pid} gone")
    assert segments(name) != []
    g2 = Gateway(one_service(b.url), tmp_path, workers=2)
    try:
        assert segments(name) == []
        assert httpx.get(g2.url + "/").status_code == 200
    finally:
        g2.stop()


def test_status_subcommand_prints_workers_backends_and_tables_as_aligned_text(gateway, backends):
    b = backends("statusb")
    g = gateway(one_service(b.url), workers=2)
    for _ in range(5):
        assert fresh_get(g, "/").status_code == 200
    r = subprocess.run(
        [*BINARY, "status", "--pid", str(g.proc.pid)], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 0, r.stderr
    assert f"master pid {g.proc.pid}" in r.stdout
    assert "{" not in r.stdout and "'" not in r.stdout          # no Python dicts
    lines = r.stdout.splitlines()
    workers = lines[lines.index("workers") + 1:lines.index("workers") + 4]
    assert workers[0].split() == ["slot", "pid", "generation", "restarts", "heartbeat"]
    assert sorted(w.split()[0] for w in workers[1:]) == ["0", "1"]
    backend = next(line for line in lines if f"svc|{b.url}" in line)
    cols = backend.split()[1:]
    assert cols[:4] == ["healthy", "0", "5", "0/0"] and cols[-1] == "0" and int(cols[5]) > 0   # bytes out
    header = next(lines[i + 1] for i, line in enumerate(lines) if line.startswith("backends"))
    end = header.index("requests") + len("requests")
    assert backend[end - 1] == "5" and backend[end] == " "          # numbers right-aligned under their header
    assert next(line for line in lines if line.strip().startswith("rate-limit")).split()[1:] == ["65536", "0", "0"]
