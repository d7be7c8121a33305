"""Serving end to end: the real binary with several workers runs a served service's revisions as local processes
(the ``process`` executor) started from ``serving_instance.py``, with the autoscaler's windows shrunk by config."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from harness import Gateway, _alive, wait_until

INSTANCE = Path(__file__).with_name("serving_instance.py")


def port_range(n: int) -> str:
    """``low-high``: ``n`` consecutive loopback ports nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        low = s.getsockname()[1] % 20000 + 30000
    while True:
        taken = False
        for port in range(low, low + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    taken = True
                    break
        if not taken:
            return f"{low}-{low + n - 1}"
        low += n


def revision(name: str, *, args: str = "", command: str | None = None, ports: int = 12, **keys: Any) -> str:
    command = command or f"exec {sys.executable} {INSTANCE} --port {{port}} --name {name} {args}"
    lines = [f"[services.fn.serving.revisions.{name}]", 'executor = "process"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in keys.items()]
    lines.append(f"process = {{command = {json.dumps(command)}, ports = {json.dumps(port_range(ports))}}}")
    return "\n".join(lines) + "\n"


def config(*revisions: str, traffic: str = "", **serving: Any) -> str:
    keys = {"stable_window": "6s", "scale_to_zero_grace": "1s", "tick": "0.5s", **serving}
    return f"""
[entrypoints.web]
address = "127.0.0.1:{{web}}"
[admin]
address = "127.0.0.1:{{admin}}"
[routers.fn]
rule = "Host(`fn.test`)"
service = "fn"
[services.fn.serving]
{chr(10).join(f"{k} = {json.dumps(v)}" for k, v in keys.items())}
{traffic}
{"".join(revisions)}
"""


def get(g: Gateway, path: str = "/", host: str = "fn.test", headers: dict[str, str] | None = None,
        timeout: float = 30.0) -> tuple[int, dict[str, str], dict[str, Any]]:
    req = urllib.request.Request(g.url + path, headers={"Host": host, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def serving(g: Gateway) -> dict[str, Any]:
    with urllib.request.urlopen(g.admin + "/api/serving", timeout=2) as r:
        return json.loads(r.read())["fn"]["revisions"]


def parallel(n: int, fn: Any) -> list[Any]:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: fn(), range(n)))


def test_from_zero_fifty_held_requests_all_get_200_from_the_first_instance(gateway) -> None:
    g = gateway(config(revision("v1", args="--delay 0.2", initial_scale=0)), workers=2)
    assert serving(g)["v1"]["ready"] == 0
    answers = parallel(50, lambda: get(g, "/?hold=0.3"))
    assert [status for status, _, _ in answers] == [200] * 50
    assert len({body["port"] for _, _, body in answers}) == 1
    assert all("X-A3S-Cold-Start" in headers for _, headers, _ in answers[:1])
    queue = serving(g)["v1"]["queue"]
    assert sum(queue["waits"]) >= 1 and queue["full"] == queue["timeout"] == 0


def test_an_idle_revision_scales_to_zero_and_its_process_ends(gateway) -> None:
    g = gateway(config(revision("v1")), workers=2)
    rev = wait_until(lambda: (r := serving(g)["v1"])["ready"] == 1 and r, what="initial instance ready")
    pid = int(rev["instances"][0]["id"])
    wait_until(lambda: serving(g)["v1"]["ready"] == 0, 30, what="scaled to zero")
    wait_until(lambda: not _alive(pid), 10, what="instance process gone")
    assert "scale to zero" in serving(g)["v1"]["decisions"][-1]["reason"]


def test_a_full_queue_answers_503_with_retry_after_naming_the_revision(gateway) -> None:
    never = revision("v1", command="exec sleep 600 # {port}", initial_scale=0)
    g = gateway(config(never, queue_depth=2, queue_timeout="3s"), workers=2)
    answers = parallel(3, lambda: get(g))
    refused = [a for a in answers if "full" in a[2].get("error", "")]
    assert len(refused) == 1
    status, headers, body = refused[0]
    assert status == 503 and int(headers["Retry-After"]) >= 1 and body["revision"] == "fn.v1"


def test_a_revision_that_never_becomes_ready_answers_503_after_the_queue_timeout(gateway) -> None:
    never = revision("v1", command="exec sleep 600 # {port}", initial_scale=0)
    g = gateway(config(never, queue_timeout="1s"), workers=2)
    status, headers, body = get(g)
    assert status == 503 and "Retry-After" in headers
    assert body == {"error": "revision 'fn.v1' had no instance ready within 1s", "revision": "fn.v1"}
    assert serving(g)["v1"]["queue"]["timeout"] == 1


def test_container_concurrency_1_is_never_exceeded_across_4_workers(gateway, tmp_path: Path) -> None:
    record = tmp_path / "most-{port}"
    g = gateway(config(revision("v1", args=f"--record {record}", container_concurrency=1, max_scale=3,
                                initial_scale=1)), workers=4)
    wait_until(lambda: serving(g)["v1"]["ready"] == 1, what="instance ready")
    answers = parallel(16, lambda: get(g, "/?hold=0.1"))
    assert [status for status, _, _ in answers] == [200] * 16
    most = [int(line) for f in tmp_path.glob("most-*") for line in f.read_text().split()]
    assert most and max(most) == 1


def test_a_90_10_split_holds_within_5_percent_over_1000_requests(gateway) -> None:
    traffic = 'traffic = [{revision = "v1", percent = 90}, {revision = "v2", percent = 10}]'
    g = gateway(config(revision("v1", min_scale=1), revision("v2", min_scale=1), traffic=traffic), workers=2)
    wait_until(lambda: all(r["ready"] == 1 for r in serving(g).values()), what="both revisions ready")
    counts = Counter(body["name"] for _, _, body in parallel(1000, lambda: get(g)) if body)
    assert counts["v1"] + counts["v2"] == 1000
    assert 50 <= counts["v2"] <= 150


def test_a_tag_routes_to_its_revision_by_header_and_by_host(gateway) -> None:
    traffic = 'traffic = [{revision = "v1", percent = 100}, {revision = "v2", percent = 0, tag = "canary"}]'
    g = gateway(config(revision("v1", min_scale=1), revision("v2", min_scale=1), traffic=traffic), workers=2)
    wait_until(lambda: all(r["ready"] == 1 for r in serving(g).values()), what="both revisions ready")
    assert {get(g)[2]["name"] for _ in range(6)} == {"v1"}
    assert get(g, headers={"Knative-Serving-Tag": "canary"})[2]["name"] == "v2"
    assert get(g, host="canary-fn.test")[2]["name"] == "v2"


def test_a_burst_over_the_panic_threshold_scales_up(gateway) -> None:
    g = gateway(config(revision("v1", min_scale=1), target=2), workers=2)
    wait_until(lambda: serving(g)["v1"]["ready"] == 1, what="instance ready")
    with ThreadPoolExecutor(12) as pool:
        held = [pool.submit(get, g, "/?hold=3") for _ in range(12)]
        rev = wait_until(lambda: (r := serving(g)["v1"])["desired"] > 1 and r, 10, what="scale-up")
        assert rev["panicking"]
        assert [f.result()[0] for f in held] == [200] * 12


def test_a_reload_that_keeps_a_revision_keeps_its_instances(gateway) -> None:
    text = config(revision("v1", min_scale=1))
    g = gateway(text, workers=2)
    before = wait_until(lambda: (r := serving(g)["v1"])["ready"] == 1 and r["instances"], what="instance ready")
    g.reload(text.replace('stable_window = "6s"', 'stable_window = "7s"'))
    assert serving(g)["v1"]["instances"] == before
    assert get(g)[0] == 200


def test_sigterm_leaves_no_instance_process_behind(gateway) -> None:
    g = gateway(config(revision("v1", min_scale=2, initial_scale=2)), workers=2)
    rev = wait_until(lambda: (r := serving(g)["v1"])["ready"] == 2 and r, what="instances ready")
    pids = [int(i["id"]) for i in rev["instances"]]
    g.proc.send_signal(signal.SIGTERM)
    assert g.proc.wait(30) == 0
    assert [pid for pid in pids if _alive(pid)] == []
    assert all(not os.path.exists(f"/proc/{pid}") or not _alive(pid) for pid in pids)


def test_a_command_that_exits_at_once_gives_503_naming_the_failure_not_a_hung_request(gateway) -> None:
    g = gateway(config(revision("v1", command="echo starting {port}; exit 3", initial_scale=0)), workers=2)
    status, headers, body = get(g)
    assert status == 503 and "Retry-After" in headers
    assert "cannot start an instance" in body["error"] and "exited with status 3" in body["error"]
    rev = serving(g)["v1"]
    assert rev["executor"]["errors"] >= 1 and "exited with status 3" in rev["executor"]["last_error"]
