"""Two serving nodes sharing one real redis-server: one leader, loads summed, takeover when the lease lapses;
first ``ServingCluster`` alone, then two real gateways deciding together."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import threading
import urllib.request
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from a3s_gateway.master.serving.cluster import Load, ServingCluster
from harness import Gateway, wait_until
from serving_support import until
from stores import RedisServer
from test_serving import config, get, revision

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")


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
            await a.publish_decision("svc/v1", 7, 2)
            assert await b.decision("svc/v1") == (7, 2) and await a.decision("svc/v1") == (7, 2)
    asyncio.run(main())


def test_total_sums_every_node_and_drops_a_node_that_stops_publishing(redis_url):
    async def main() -> None:
        async with nodes(redis_url, load_ttl=0.5) as (a, b):
            await a.publish("svc/v1", 2.5, 1)
            await b.publish("svc/v1", 4.25, 2)
            await b.publish("svc/v2", 1.0)
            assert await a.total("svc/v1") == await b.total("svc/v1") == Load(6.75, 3, 2)
            assert await a.total("svc/v2") == Load(1.0, 0, 1) and await a.total("svc/none") == Load(0.0, 0, 0)
            await a.publish("svc/v1", 3.0, 1)   # a node's new bucket replaces its old one
            assert await b.total("svc/v1") == Load(7.25, 3, 2)

            async def only_a() -> bool:         # b stopped publishing: its value expires (Redis's clock)
                await a.publish("svc/v1", 3.0, 1)
                return await a.total("svc/v1") == Load(3.0, 1, 1)
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


# -- the real binary: two gateway nodes (2 workers each) in front of one revision, sharing one redis-server

def node_config(redis: str, lease: str = "2s") -> str:
    """One node's config: its own port range (each node runs its own process instances), the shared Redis."""
    return config(revision("v1", initial_scale=1, max_scale=4), target=1) + f"""
[serving]
redis_url = "{redis}"
key_prefix = "t"
lease = "{lease}"
"""


def node(config_text: str, tmp: Path) -> Gateway:
    tmp.mkdir()
    return Gateway(config_text, tmp, workers=2)


def cluster(g: Gateway) -> dict[str, Any]:
    with urllib.request.urlopen(g.admin + "/api/serving", timeout=2) as r:
        return json.loads(r.read())["fn"]


def load(g: Gateway, n: int) -> tuple[ThreadPoolExecutor, threading.Event]:
    """``n`` requests held in flight on ``g`` until the event is set."""
    done = threading.Event()
    pool = ThreadPoolExecutor(n)

    def loop() -> None:
        while not done.is_set():
            get(g, "/?hold=0.5")
    for _ in range(n):
        pool.submit(loop)
    return pool, done


def test_two_gateway_nodes_sharing_one_redis_make_one_set_of_decisions(redis_url: str, tmp_path: Path) -> None:
    a, b = node(node_config(redis_url), tmp_path / "a"), node(node_config(redis_url), tmp_path / "b")
    pool, done = load(a, 6)         # every request reaches node a; node b serves nothing
    try:
        def share(view: dict[str, Any]) -> bool:
            """The node runs its half of a cluster-wide decision made for both nodes."""
            rev = view["revisions"]["v1"]
            wanted = rev["cluster"]["desired"]
            return bool(wanted and wanted >= 3 and rev["cluster"]["nodes"] == 2 and
                        rev["desired"] == min(4, -(-wanted // 2)))
        views = wait_until(lambda: (v := [cluster(a), cluster(b)]) and all(map(share, v)) and v, 30,
                           what="both nodes running their share of one decision")
        roles = sorted(v["cluster"]["role"] for v in views)
        assert roles == ["follower", "leader"]
        leader, follower = sorted(zip(views, (a, b)), key=lambda p: p[0]["cluster"]["role"] != "leader")
        assert {v["cluster"]["leader"] for v in views} == {leader[0]["cluster"]["node"]}
        # node b had no request: its own decider would keep one instance; it runs its share of the leader's count
        b_view = views[1]["revisions"]["v1"]
        assert b_view["in_flight"] == 0 and b_view["stable_concurrency"] == 0 and b_view["desired"] >= 2
        reasons = [d["reason"] for d in follower[0]["revisions"]["v1"]["decisions"]]
        assert any(r.startswith(f"following {leader[0]['cluster']['node']}") for r in reasons)
        assert any("cluster-wide over 2 node(s)" in d["reason"] for d in leader[0]["revisions"]["v1"]["decisions"])

        # the leader hangs (SIGSTOP on its master): its lease lapses and the follower takes over
        leader[1].signal(signal.SIGSTOP)
        try:
            wait_until(lambda: cluster(follower[1])["cluster"]["role"] == "leader", 15, what="takeover")
            assert cluster(follower[1])["cluster"]["leader"] == follower[0]["cluster"]["node"]
        finally:
            leader[1].signal(signal.SIGCONT)
        # the old leader learns it lost the lease on its next renewal and follows the new one
        old = wait_until(lambda: (c := cluster(leader[1]))["cluster"]["role"] == "follower" and c, 15,
                         what="the old leader following")
        assert old["cluster"]["leader"] == follower[0]["cluster"]["node"]
    finally:
        done.set()
        pool.shutdown()
        a.stop()
        b.stop()


class ScaleRecorder:
    """A scale URL for the ``http`` executor that records who posted what: ``/scale/<node>`` per node."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                recorder.calls.append((self.path.rsplit("/", 1)[-1], body["replicas"]))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/scale"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def by(self, node: str) -> list[int]:
        return [replicas for who, replicas in self.calls if who == node]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def shared_config(redis: str, scale_url: str) -> str:
    """A revision on an ``http`` executor: every node sees the same instances, so only the leader scales."""
    rev = ('[services.fn.serving.revisions.v1]\nexecutor = "http"\nmin_scale = 2\ninitial_scale = 2\n'
           f'http = {{scale_url = "{scale_url}", registration_token = "reg-1"}}\n')
    return config(rev, target=1) + f"""
[serving]
redis_url = "{redis}"
key_prefix = "t"
lease = "2s"
"""


def test_with_a_shared_executor_only_the_leader_calls_scale_until_the_other_takes_over(redis_url: str,
                                                                                         tmp_path: Path) -> None:
    box = ScaleRecorder()
    a = node(shared_config(redis_url, box.url + "/a"), tmp_path / "a")
    b = node(shared_config(redis_url, box.url + "/b"), tmp_path / "b")
    try:
        views = wait_until(lambda: (v := {"a": cluster(a), "b": cluster(b)}) and all(
            x["cluster"]["role"] in ("leader", "follower") for x in v.values()) and v, 15, what="roles")
        leader = next(n for n, v in views.items() if v["cluster"]["role"] == "leader")
        follower = "b" if leader == "a" else "a"
        wait_until(lambda: box.by(leader) == [2], 15, what="the leader's scale call")
        # the follower reads the leader's published count on its own next tick: poll for it
        fv = wait_until(lambda: (r := cluster({"a": a, "b": b}[follower])["revisions"]["v1"])["cluster"]["desired"]
                        == 2 and r, 15, what="the follower reading the leader's count")
        assert box.by(follower) == [] and fv["desired"] == 2
        {"a": a, "b": b}[leader].signal(signal.SIGSTOP)       # the leader hangs: the other takes over and scales
        try:
            wait_until(lambda: box.by(follower) == [2], 15, what="the new leader's scale call")
            assert cluster({"a": a, "b": b}[follower])["cluster"]["role"] == "leader"
        finally:
            {"a": a, "b": b}[leader].signal(signal.SIGCONT)
    finally:
        a.stop()
        b.stop()
        box.stop()


def test_with_redis_down_a_node_decides_alone_counts_it_and_rejoins_when_redis_is_back(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    g = node(node_config(f"redis://127.0.0.1:{server.port}/0"), tmp_path / "g")
    try:
        wait_until(lambda: cluster(g)["cluster"]["role"] == "leader", 15, what="the only node leading")
        server.stop()
        view = wait_until(lambda: (c := cluster(g))["cluster"]["role"] == "alone" and c, 15, what="deciding alone")
        assert view["cluster"]["errors"] >= 1 and view["cluster"]["last_error"]
        assert get(g)[0] == 200         # still served, still scaled by its own decider
        decided = wait_until(lambda: [d for d in cluster(g)["revisions"]["v1"]["decisions"]
                                      if "stable" in d["reason"] and "leader" not in d["reason"]], 15,
                             what="a decision of its own")
        assert decided
        with urllib.request.urlopen(g.admin + "/api/gateway/metrics", timeout=2) as r:
            metrics = r.read().decode()
        fail_open = [line for line in metrics.splitlines() if line.startswith("a3s_gateway_serving_cluster_fail_open")]
        assert fail_open and float(fail_open[0].split()[-1]) >= 1
        assert "decides alone" in g.logs()
        server.start()                  # same port: the next round succeeds and the node leads again
        wait_until(lambda: cluster(g)["cluster"]["role"] == "leader", 15, what="leading again")
    finally:
        g.stop()
        server.stop()
