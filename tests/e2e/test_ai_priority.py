"""priority through the real binary: classification, a node-wide concurrency cap, priority queueing and
shedding of the least urgent requests first."""

from __future__ import annotations

import asyncio

import httpx
from ai_support import AiBackend

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[services.llm.load_balancer]
servers = [{url = "%(llm)s"}]
[routers.llm]
rule = "PathPrefix(`/`)"
service = "llm"
middlewares = ["prio"]
[middlewares.prio]
type = "priority"
max_concurrency = 2
max_queue = 4
queue_timeout_ms = 20000
user_tiers = {ceo = "critical"}
high_priority_paths = ["/slow/0.4/urgent"]
low_priority_paths = ["/batch"]
"""


def test_priority_is_classified_and_sent_upstream(gateway) -> None:
    llm = AiBackend("llm")
    try:
        gw = gateway(CONFIG % {"llm": llm.url})
        get = lambda path, **h: httpx.get(gw.url + path, headers=h).json()["headers"]["x-request-priority"]  # noqa: E731
        assert get("/x") == "normal"
        assert get("/x", **{"X-Request-Priority": "BestEffort"}) == "best-effort"
        assert get("/x", **{"X-Request-Priority": "0"}) == "critical"
        assert get("/x", **{"X-Request-Priority": "bogus"}) == "normal"
        assert get("/x", **{"X-User-Id": "ceo"}) == "critical"
        assert get("/batch/1") == "low"
    finally:
        llm.stop()


def test_critical_requests_complete_while_best_effort_is_shed_first(gateway) -> None:
    llm = AiBackend("llm")
    try:
        gw = gateway(CONFIG % {"llm": llm.url}, workers=2)

        async def one(prio: str, delay: float) -> tuple[str, int]:
            await asyncio.sleep(delay)
            async with httpx.AsyncClient(timeout=30) as c:     # own connection: spread over workers
                r = await c.get(gw.url + "/slow/0.4", headers={"X-Request-Priority": prio})
                if r.status_code == 503:
                    assert r.headers["retry-after"] == "1" and r.json()["priority"] == prio
                return prio, r.status_code

        async def load() -> list[tuple[str, int]]:
            tasks = [one("best-effort", 0) for _ in range(12)]
            tasks += [one("critical", 0.15) for _ in range(4)]
            return await asyncio.gather(*tasks)

        results = asyncio.run(load())
        critical = [s for p, s in results if p == "critical"]
        best = [s for p, s in results if p == "best-effort"]
        assert critical == [200] * 4, results
        assert best.count(503) >= 6, results          # 12 best-effort vs 2 running + 4 queued: shed first
        assert 200 in best
        # the cap held node-wide: the backend never saw more than max_concurrency at once
        stats = httpx.get(llm.url + "/_seen").json()
        assert stats["seen"] == critical.count(200) + best.count(200)
        assert stats["peak"] <= 2, stats
    finally:
        llm.stop()
