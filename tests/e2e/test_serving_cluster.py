"""Two serving nodes sharing one real redis-server: one leader, loads summed, takeover when the lease lapses."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from a3s_gateway.master.serving.cluster import ServingCluster
from serving_support import until
from stores import RedisServer


@pytest.fixture
def redis_url(tmp_path: Path):
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield f"redis://127.0.0.1:{server.port}/0"
    server.stop()


@contextlib.asynccontextmanager
async def nodes(url: str, **kwargs: float) -> AsyncIterator[tuple[ServingCluster, ServingCluster]]:
    """Two nodes, "a" and "b", on the same Redis."""
    a, b = ServingCluster(url, node="a", prefix="t", **kwargs), ServingCluster(url, node="b", prefix="t", **kwargs)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


def test_exactly_one_of_two_nodes_leads_and_both_follow_its_decision(redis_url):
    async def main() -> None:
        async with nodes(redis_url) as (a, b):
            for _ in range(5):              # renewals keep the same leader
                assert [await a.is_leader(), await b.is_leader()] == [True, False]
            assert await b.leader() == "a"
            assert await b.decision("svc/v1") is None
            await a.publish_decision("svc/v1", 7)
            assert await b.decision("svc/v1") == 7 and await a.decision("svc/v1") == 7
    asyncio.run(main())


def test_total_sums_every_node_and_drops_a_node_that_stops_publishing(redis_url):
    async def main() -> None:
        async with nodes(redis_url, load_ttl=0.5) as (a, b):
            await a.publish("svc/v1", 2.5)
            await b.publish("svc/v1", 4.25)
            await b.publish("svc/v2", 1.0)
            assert await a.total("svc/v1") == 6.75 and await b.total("svc/v1") == 6.75
            assert await a.total("svc/v2") == 1.0 and await a.total("svc/none") == 0.0
            await a.publish("svc/v1", 3.0)      # a node's new bucket replaces its old one
            assert await b.total("svc/v1") == 7.25

            async def only_a() -> bool:         # b stopped publishing: its value expires (Redis's clock)
                await a.publish("svc/v1", 3.0)
                return await a.total("svc/v1") == 3.0
            await until(only_a, 5, "b's load to expire")
    asyncio.run(main())


def test_follower_takes_over_when_the_leader_stops_renewing_and_the_old_leader_then_follows(redis_url):
    async def main() -> None:
        async with nodes(redis_url, lease=0.5) as (a, b):
            assert await a.is_leader() and not await b.is_leader()
            # a stops renewing (a hung or dead node); b keeps asking and takes the lease once it lapses
            await until(b.is_leader, 5, "b to take the lapsed lease")
            assert await b.leader() == "b"
            assert not await a.is_leader()      # a's compare-and-extend fails: it learns it lost
            assert a.leading is False and b.leading is True
    asyncio.run(main())


def test_a_resigning_leader_hands_over_at_once_and_an_unreachable_redis_means_not_leader(redis_url):
    async def main() -> None:
        async with nodes(redis_url, lease=60) as (a, b):
            assert await a.is_leader()
            await a.resign()
            assert await b.is_leader() and not await a.is_leader()
        dead = ServingCluster("redis://127.0.0.1:1/0", node="c")
        try:
            assert await dead.is_leader() is False
        finally:
            await dead.close()
    asyncio.run(main())
