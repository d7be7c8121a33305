"""Node-wide accuracy of the plane's rate limiter and circuit breaker with 4 workers and traffic on many
connections (so every worker serves some of it), through the real binary."""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
import pytest
from harness import one_service

LIMIT = """
[middlewares.limit]
type = "rate-limit"
rate = 100
burst = 50
key = "router"
"""


def flood(url: str, seconds: float, threads: int = 6) -> tuple[Counter, float]:
    """Requests as fast as the threads can send them for ``seconds``; each thread reconnects every 20
    requests so the kernel spreads connections over all workers. Bounded by the deadline. Returns the counts by
    status and the window the traffic really covered, from the first request sent to the last answer received
    (on a loaded machine the threads start late, so the nominal ``seconds`` would overstate it)."""
    counts: Counter = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    first_sent: list[float] = []
    last_answered: list[float] = []

    def run() -> None:
        local: Counter = Counter()
        sent = answered = None
        while time.monotonic() < deadline:
            with httpx.Client(timeout=5) as c:
                for _ in range(20):
                    if time.monotonic() >= deadline:
                        break
                    sent = sent or time.monotonic()
                    r = c.get(url)
                    answered = time.monotonic()
                    local[r.status_code] += 1
                    if r.status_code == 429:
                        assert int(r.headers["retry-after"]) >= 1
                        assert r.headers["ratelimit-policy"] and r.headers["ratelimit"]
        with lock:
            counts.update(local)
            if sent is not None and answered is not None:
                first_sent.append(sent)
                last_answered.append(answered)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return counts, max(last_answered) - min(first_sent)


@pytest.mark.slow
def test_rate_limit_admits_burst_plus_rate_times_seconds_across_4_workers(gateway, backends):
    b = backends("limited")
    g = gateway(one_service(b.url, middlewares=("limit",), extra=LIMIT), workers=4)
    counts, window = flood(g.url + "/x", 10.0)
    assert counts[429] > counts[200], counts          # the flood really exceeded the limit
    expected = 50 + 100 * window                      # burst + rate × the seconds the traffic covered
    assert expected * 0.95 <= counts[200] <= expected * 1.05, (counts, window)
    # every answer was an admission or a refusal: no worker failed a request
    assert set(counts) <= {200, 429}


BREAKER = """
[middlewares.cb]
type = "circuit-breaker"
failure_threshold = 5
cooldown_secs = "4s"
"""


def test_breaker_opens_for_every_worker_and_admits_exactly_one_half_open_trial(gateway, backends):
    b = backends("flaky")
    g = gateway(one_service(b.url, middlewares=("cb",), extra=BREAKER), workers=4)
    # failures seen by different workers add up: 5 × 500 over fresh connections trip it
    for _ in range(5):
        assert httpx.get(g.url + "/status/500").status_code == 500
    tripped = time.monotonic()
    # open: every worker answers 503 at once, nothing reaches the backend
    seen = httpx.get(b.url + "/stats").json()["requests"]
    statuses = {httpx.get(g.url + "/status/200").status_code for _ in range(16)}
    assert time.monotonic() - tripped < 4, "too slow to probe within the cooldown"
    assert statuses == {503}
    assert httpx.get(b.url + "/stats").json()["requests"] == seen
    # after the cooldown, 12 concurrent requests on fresh connections: exactly one is let through (a slow
    # trial, still in flight while the others arrive), the rest get 503
    time.sleep(max(0.0, tripped + 4.2 - time.monotonic()))  # the cooldown itself: time-based, nothing to poll
    results: list[int] = []

    def one() -> None:
        results.append(httpx.get(g.url + "/delay/1", timeout=10).status_code)

    threads = [threading.Thread(target=one) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200] + [503] * 11, results
    assert httpx.get(b.url + "/stats").json()["requests"] == seen + 1
    # the successful trial closed it for everyone
    assert {httpx.get(g.url + "/status/200").status_code for _ in range(20)} == {200}
