"""The dashboard's Serving page in headless Chromium (playwright, Debian's chromium), against the real binary with
2 workers running a served service's revisions as processes, a rollout in progress, a revision whose command
fails, and a Redis that makes this node the cluster's leader."""

from __future__ import annotations

import shutil
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from harness import Gateway, wait_until
from stores import RedisServer
from test_dashboard import TOKEN, Watched, api_get, browser  # noqa: F401 — browser is a fixture
from test_serving import config, get, revision

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("dashboard-serving")
    redis = RedisServer(tmp / "redis")
    redis.start()
    text = config(revision("v1", min_scale=1), revision("v2", min_scale=1),
                  revision("v3", command="echo starting {port}; exit 3", initial_scale=1),
                  traffic='traffic = [{revision = "v1", percent = 100}]')
    text = text.replace('address = "127.0.0.1:{admin}"', f'address = "127.0.0.1:{{admin}}"\ntoken = "{TOKEN}"')
    text += ('[services.fn.serving.rollout]\nfrom = "v1"\nto = "v2"\nstep_interval = "1h"\n'
             f'[serving]\nredis_url = "redis://127.0.0.1:{redis.port}/0"\n')
    g = Gateway(text, tmp, workers=2, wait=False)
    try:
        wait_until(lambda: api_get(g, "/api/gateway/health").json()["state"] == "running", 20, what="running")
        yield g
    finally:
        g.stop()
        redis.stop()


@pytest.fixture(scope="module")
def watched(browser: Any, node: Gateway) -> Iterator[Watched]:  # noqa: F811 — the imported fixture
    w = Watched(browser, node)
    yield w
    w.context.close()


def cells(watched: Watched, revision: str) -> list[str]:
    """The revisions table's row of ``revision``, as shown now."""
    rows = watched.page.eval_on_selector_all(".revisions tbody tr",
                                             "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
    return next((row for row in rows if row[0] == revision), [])


def test_the_serving_page_shows_revisions_decisions_errors_rollout_and_the_cluster_role(watched: Watched) -> None:
    page, g = watched.page, watched.g
    page.goto(g.admin + "/dashboard/")
    page.click("nav a:text-is('Serving')")
    page.wait_for_url("**/dashboard/serving")
    assert page.text_content("h1") == "Serving"
    # columns: revision, desired, ready, starting, in flight, queued, stable, panic, mode, target, cluster, executor
    watched.wait(lambda: cells(watched, "v1")[1:3] == ["1", "1"] and cells(watched, "v2")[2] == "1")
    watched.wait(lambda: "exited with status 3" in "".join(cells(watched, "v3")[-1:]))
    assert cells(watched, "v3")[-1].startswith("process · ") and " errors" in cells(watched, "v3")[-1]
    assert "initial_scale 1" in page.text_content(".decisions")
    main = page.text_content("main")
    assert "v1 → v2" in main and "progressing" in main and page.locator("main progress").count() == 1
    node = api_get(g, "/api/serving").json()["fn"]["cluster"]["node"]
    watched.wait(lambda: "leader" in page.text_content("main dl") and node in page.text_content("main dl"))

    # live: requests held in flight show up within a few refreshes
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            get(g, "/?hold=1")

    threads = [threading.Thread(target=traffic) for _ in range(3)]
    start = watched.refreshes()
    for t in threads:
        t.start()
    try:
        watched.wait(lambda: float(cells(watched, "v1")[4] or 0) > 0)
        assert watched.refreshes() - start <= 4
    finally:
        stop.set()
        for t in threads:
            t.join()
    page.goto(g.admin + "/dashboard/serving?q=v3")
    assert [row[0] for row in page.eval_on_selector_all(".revisions tbody tr",
                                                        "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
            ] == ["v3"]

    for path in ("/dashboard/serving?fragment=live", "/dashboard/workers?fragment=live", "/api/serving"):
        times = []
        for _ in range(10):
            t = time.perf_counter()
            assert api_get(g, path).status_code == 200
            times.append(time.perf_counter() - t)
        print(f"{path}: median {statistics.median(times) * 1000:.1f} ms")
    assert not [m for m in watched.console if "Content Security Policy" in m or "pageerror" in m], watched.console
