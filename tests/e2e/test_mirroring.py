"""The ``mirroring`` service kind and the retry budget through the real binary, 2 workers, counting backends."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time

import httpx
import psutil
import pytest
from harness import wait_until
from recording_backend import RecordingBackend
from test_weighted import HEAD, client, lb, spread


def mirroring(name: str, primary: str, *mirrors: tuple[str, int], extra: str = "") -> str:
    items = ", ".join(f'{{name = "{n}", percent = {p}}}' for n, p in mirrors)
    return f'[services.{name}.mirroring]\nservice = "{primary}"\nmirrors = [{items}]\n{extra}'


class SlowBackend:
    """Answers every request with ``status`` after ``delay`` seconds, counting the requests that arrived."""

    def __init__(self, delay: float, status: int = 200) -> None:
        self.delay, self.status, self.hits = delay, status, 0
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        threading.Thread(target=self._run, args=(started,), daemon=True).start()
        started.wait(5)
        self.url = f"http://127.0.0.1:{self.port}"

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        started.set()
        self.loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                self.hits += 1
                await asyncio.sleep(self.delay)
                writer.write(b"HTTP/1.1 %d X\r\nContent-Length: 2\r\n\r\nno" % self.status)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def stop(self) -> None:
        async def halt() -> None:
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(halt(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)


def mirror_view(g) -> dict:
    return httpx.get(f"{g.admin}/api/services/top").json()


def test_mirroring_20_percent_mirrors_exactly_200_of_1000_across_workers(gateway, backends):
    p, m = backends("p"), backends("m")
    g = gateway(HEAD + mirroring("top", "main", ("shadow", 20)) + lb("main", p.url) + lb("shadow", m.url), workers=2)
    assert spread(g, 1000, clients=8) == {"p": 1000}
    wait_until(lambda: httpx.get(m.url + "/stats").json()["requests"] == 200, what="200 mirrored requests")
    time.sleep(0.3)
    assert httpx.get(m.url + "/stats").json()["requests"] == 200
    view = mirror_view(g)
    assert view["kind"] == "mirroring" and view["health"] == "up" and view["requests"] == 1000
    assert view["service"] == {"name": "main", "health": "up"}
    (shadow,) = view["mirrors"]
    assert shadow["name"] == "shadow" and shadow["percent"] == 20 and shadow["chosen"] == 200
    wait_until(lambda: mirror_view(g)["mirrors"][0]["outcomes"]["sent"] == 200, what="200 answered mirrors")
    metrics = httpx.get(f"{g.admin}/api/gateway/metrics").text
    assert 'a3s_gateway_mirror_requests_total{mirror="shadow",outcome="sent",service="top"} 200.0' in metrics


@pytest.mark.parametrize("proto", ["http1", "h2c"])
def test_mirroring_copies_bodies_and_body_less_requests_but_not_a_body_over_the_limit(gateway, backends, proto):
    p, m = backends("p"), RecordingBackend()
    extra = "max_body_bytes = 65536\n"
    g = gateway(HEAD + mirroring("top", "main", ("shadow", 100), extra=extra) + lb("main", p.url)
                + lb("shadow", m.url), workers=2)

    def mirrored() -> list[tuple[str, str, bytes]]:
        return [(meth, target, body) for c in m.conns for meth, target, _h, body in c.requests]

    c = client(proto)
    try:
        assert c.get(g.url + "/plain").status_code == 200                  # no body: mirrored too
        wait_until(lambda: mirrored() == [("GET", "/plain", b"")], what="the GET mirrored")
        body = os.urandom(40000)
        r = c.post(g.url + "/upload", content=body)
        assert r.json()["body_len"] == 40000
        wait_until(lambda: len(mirrored()) == 2, what="the POST mirrored")
        assert mirrored()[1] == ("POST", "/upload", body)
        if proto == "http1":                                                # a chunked body keeps its framing
            r = c.post(g.url + "/stream", content=iter([b"a" * 1000, b"b" * 3000]))
            assert r.json()["body_len"] == 4000
            wait_until(lambda: len(mirrored()) == 3, what="the chunked POST mirrored")
            assert mirrored()[2] == ("POST", "/stream", b"a" * 1000 + b"b" * 3000)
        seen = len(mirrored())
        big = os.urandom(200_000)
        r = c.post(g.url + "/upload", content=big)                         # over the limit: primary only, whole
        assert r.json()["body_len"] == 200_000 and r.json()["body_sha256"] == hashlib.sha256(big).hexdigest()
        wait_until(lambda: mirror_view(g)["mirrors"][0]["outcomes"]["too_large"] == 1, what="counted too_large")
        assert len(mirrored()) == seen
    finally:
        c.close()
        m.stop()


def test_a_slow_mirror_does_not_slow_the_primary_and_extra_copies_are_dropped(gateway, backends):
    p, slow = backends("p"), SlowBackend(5.0)
    extra = 'timeout = "1s"\nmax_in_flight = 10\n'
    g = gateway(HEAD + mirroring("top", "main", ("shadow", 100), extra=extra) + lb("main", p.url)
                + lb("shadow", slow.url), workers=2)
    try:
        started = time.monotonic()
        with httpx.Client(timeout=10) as c:
            times = []
            for _ in range(100):
                t0 = time.perf_counter()
                assert c.get(g.url + "/").headers["x-backend"] == "p"
                times.append(time.perf_counter() - t0)
        assert time.monotonic() - started < 3.0 and sorted(times)[98] < 0.25   # never waits for the 5 s mirror
        outcomes = mirror_view(g)["mirrors"][0]["outcomes"]
        assert outcomes["dropped"] >= 80                                    # 10 per worker in flight at most
        wait_until(lambda: mirror_view(g)["mirrors"][0]["outcomes"]["timeout"] == 100 - outcomes["dropped"],
                   what="the admitted copies time out after 1 s")
        assert slow.hits == 100 - outcomes["dropped"]
    finally:
        slow.stop()


RETRY = """
[middlewares.retry]
type = "retry"
max_retries = 1
retry_interval_ms = 0
retry_on_statuses = [503]
budget_percent = 20
min_retry_concurrency = 3
"""


def test_retry_budget_holds_with_100_requests_in_flight(gateway):
    busy = SlowBackend(1.0, status=503)
    config = HEAD.replace("[routers.all]\n", '[routers.all]\nmiddlewares = ["retry"]\n') + RETRY + lb("top", busy.url)
    g = gateway(config, workers=2)
    try:
        async def burst() -> list[int]:
            async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=200)) as c:
                return [r.status_code for r in await asyncio.gather(*(c.get(g.url + "/") for _ in range(100)))]

        assert asyncio.run(burst()) == [503] * 100
        retried = busy.hits - 100
        assert 3 <= retried <= 21                        # 20 % of 100 in flight (+1 for a race between workers)
        metrics = httpx.get(f"{g.admin}/api/gateway/metrics").text
        assert f'a3s_gateway_retries_budget_exhausted_total{{service="top"}} {100 - retried}.0' in metrics
    finally:
        busy.stop()


def test_a_client_that_goes_away_does_not_cancel_the_copy_already_sent(gateway, backends):
    p, m = backends("p"), RecordingBackend()
    g = gateway(HEAD + mirroring("top", "main", ("shadow", 100)) + lb("main", p.url) + lb("shadow", m.url), workers=2)
    try:
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(g.url + "/delay/2", timeout=0.3)
        wait_until(lambda: [(r[0], r[1]) for c in m.conns for r in c.requests] == [("GET", "/delay/2")],
                   what="the copy reached the mirror")
    finally:
        m.stop()


def test_1000_concurrent_mirrored_posts_keep_worker_memory_bounded(gateway, backends):
    p, slow = backends("p"), SlowBackend(5.0)
    g = gateway(HEAD + mirroring("top", "main", ("shadow", 100), extra='timeout = "1s"\n') + lb("main", p.url)
                + lb("shadow", slow.url), workers=2)
    workers = [psutil.Process(pid) for pid in g.worker_pids()]
    before = [w.memory_info().rss for w in workers]
    body = os.urandom(64 * 1024)
    try:
        async def burst() -> list[int]:
            async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=1000)) as c:
                return [r.status_code for r in await asyncio.gather(*(c.post(g.url + "/upload", content=body)
                                                                      for _ in range(1000)))]

        assert asyncio.run(burst()) == [200] * 1000
        grown = [w.memory_info().rss - b for w, b in zip(workers, before, strict=True)]
        assert max(grown) < 160 * 2**20, grown          # 64 MiB of bodies in all, at most 256 copies a worker
        outcomes = mirror_view(g)["mirrors"][0]["outcomes"]
        assert outcomes["dropped"] > 0 and sum(outcomes.values()) <= 1000
    finally:
        slow.stop()


def test_mirror_body_false_sends_copies_without_the_body(gateway, backends):
    p, m = backends("p"), RecordingBackend()
    g = gateway(HEAD + mirroring("top", "main", ("shadow", 100), extra="mirror_body = false\n") + lb("main", p.url)
                + lb("shadow", m.url), workers=2)
    try:
        assert httpx.post(g.url + "/upload", content=b"x" * 5000).json()["body_len"] == 5000
        wait_until(lambda: [(r[0], r[1], r[3]) for c in m.conns for r in c.requests] == [("POST", "/upload", b"")],
                   what="a body-less copy")
    finally:
        m.stop()
