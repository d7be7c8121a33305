"""The Docker provider through the real binary (2 workers) against a real dockerd (Debian's docker.io) started
here, with busybox httpd containers on the host network (the offline recipe: an image made with ``docker import``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from harness import Gateway, free_port, wait_until
from stores import Dockerd

BASE = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[providers.docker]
endpoint = "unix://SOCKET"
debounce = "50ms"
max_backoff = "500ms"
"""


@pytest.fixture
def gw(dockerd: Dockerd, tmp_path: Path) -> Iterator[Gateway]:
    g = Gateway(BASE.replace("SOCKET", str(dockerd.socket)), tmp_path)
    yield g
    g.stop()
    ids = dockerd.cli("ps", "-aq").split()
    if ids:
        dockerd.cli("rm", "-f", *ids)


def status(g: Gateway, host: str) -> int:
    return httpx.get(g.url + "/", headers={"Host": host}, timeout=5).status_code


def provider(g: Gateway) -> dict:
    return next(p for p in httpx.get(g.admin + "/api/providers").json() if p["name"] == "docker")


def labels(prefix: str, router: str, host: str, port: int) -> dict[str, str]:
    return {f"{prefix}.enable": "true", f"{prefix}.http.routers.{router}.rule": f"Host(`{host}`)",
            f"{prefix}.http.services.{router}.loadbalancer.server.port": str(port)}


def test_container_routes_within_2s_then_answers_503_when_stopped_and_404_once_removed(dockerd, gw):
    port = free_port()
    started = time.monotonic()
    dockerd.run("web1", port, labels("a3s", "web", "web.test", port))
    wait_until(lambda: status(gw, "web.test") == 200, 2, interval=0.01, what="container routed within 2 s")
    elapsed = time.monotonic() - started
    print(f"container start to first routed request: {elapsed:.3f}s")
    assert httpx.get(gw.url + "/", headers={"Host": "web.test"}).text == "hello from a container\n"
    routers = {r["name"]: r for r in httpx.get(gw.admin + "/api/routers").json()}
    assert routers["web@docker"]["provider"] == "docker"
    dockerd.cli("stop", "-t", "0", "web1")
    wait_until(lambda: status(gw, "web.test") == 503, 5, what="503 while the container is stopped")
    dockerd.cli("rm", "web1")
    wait_until(lambda: status(gw, "web.test") == 404, 5, what="404 once removed")


def test_unhealthy_container_keeps_its_router_answering_503_and_routes_again_when_healthy(dockerd, gw):
    port = free_port()
    dockerd.run("hc", port, labels("a3s", "hc", "hc.test", port), health=True)
    wait_until(lambda: status(gw, "hc.test") == 200, 10, what="healthy container routed")
    dockerd.cli("exec", "hc", "rm", "/www/ok")
    wait_until(lambda: status(gw, "hc.test") == 503, 10, what="unhealthy: 503, the router stays")
    dockerd.cli("exec", "hc", "touch", "/www/ok")
    wait_until(lambda: status(gw, "hc.test") == 200, 10, what="healthy again")


def test_traefik_labels_work_and_a_recreated_container_with_a_new_id_is_picked_up(dockerd, gw):
    port = free_port()
    first = dockerd.run("tr", port, labels("traefik", "tr", "tr.test", port))
    wait_until(lambda: status(gw, "tr.test") == 200, 5, what="traefik-labelled container routed")
    dockerd.cli("rm", "-f", "tr")
    wait_until(lambda: status(gw, "tr.test") == 404, 5, what="removed")
    second = dockerd.run("tr", port, labels("traefik", "tr", "tr.test", port))
    assert first != second
    wait_until(lambda: status(gw, "tr.test") == 200, 5, what="recreated container routed")


def test_default_router_without_labels_and_exposed_by_default(dockerd, gw):
    port = free_port()
    dockerd.run("plain-app", port, {"a3s.http.services.plain.loadbalancer.server.port": str(port)})
    wait_until(lambda: status(gw, "plain-app") == 200, 5, what="default rule Host(`plain-app`)")
    dockerd.run("off", free_port(), {"a3s.enable": "false"})
    wait_until(lambda: provider(gw)["last_sync"] and provider(gw)["objects"] == 2, 5, what="synced")


def test_bad_labels_are_reported_with_the_container_name_and_the_rest_applies(dockerd, gw):
    good, bad = free_port(), free_port()
    dockerd.run("good", good, labels("a3s", "good", "good.test", good))
    dockerd.run("bad", bad, {**labels("a3s", "bad", "bad.test", bad), "a3s.http.routers.bad.priority": "high",
                             "a3s.http.middlewares.m.type": "no-such-type", "a3s.http.routers.other.rule": "Host(`x`)",
                             "a3s.http.routers.other.service": "bad", "a3s.http.routers.other.middlewares": "m"})
    wait_until(lambda: status(gw, "good.test") == 200, 5, what="good container routed")
    problems = " ".join(wait_until(lambda: provider(gw)["problems"], 5, what="problems reported"))
    assert "container 'bad'" in problems and "priority" in problems and "no-such-type" in problems
    assert status(gw, "bad.test") == 404 and status(gw, "x") == 404


def test_a_flood_of_container_events_causes_few_reads_and_no_rebuild(dockerd, tmp_path):
    port = free_port()
    dockerd.run("flood", port, labels("a3s", "flood", "flood.test", port))
    g = Gateway(BASE.replace("SOCKET", str(dockerd.socket)).replace('"50ms"', '"200ms"'), tmp_path)
    try:
        wait_until(lambda: status(g, "flood.test") == 200, 5, what="routed")
        generation, syncs = _generation(g), provider(g)["syncs"]
        started = time.monotonic()
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(dockerd.socket)),
                          base_url="http://docker/v1.41") as api:
            for i in range(500):            # 500 rename events; the objects stay the same
                old, new = ("flood", "flood-x") if i % 2 == 0 else ("flood-x", "flood")
                api.post(f"/containers/{old}/rename", params={"name": new}).raise_for_status()
        took = time.monotonic() - started
        wait_until(lambda: provider(g)["syncs"] > syncs, 5, what="read after the flood")
        time.sleep(0.5)                     # an absence cannot be polled: reads still owed to the flood
        reads = provider(g)["syncs"] - syncs
        print(f"500 events in {took:.2f}s: {reads} reads, {_generation(g) - generation} rebuilds")
        assert reads <= 25                  # a read per 20 events at most (a steady stream: one per 1.6 s)
        assert _generation(g) == generation and status(g, "flood.test") == 200
    finally:
        g.stop()
        dockerd.cli("rm", "-f", "flood")


def _generation(g: Gateway) -> int:
    text = httpx.get(g.admin + "/api/gateway/metrics").text
    return int(float(re.search(r"^a3s_gateway_config_generation (\S+)", text, re.M)[1]))


def test_tcp_endpoint_with_tls_client_certificates(dockerd, tmp_path):
    port = free_port()
    dockerd.run("tls-app", port, labels("a3s", "tls", "tls.test", port))
    tls = (f'endpoint = "tcp://localhost:{dockerd.tcp_port}"\ntls = {{ca_file = "{dockerd.ca.path}", '
           f'cert_file = "{dockerd.client.cert}", key_file = "{dockerd.client.key}"}}\n')
    text = BASE.replace('endpoint = "unix://SOCKET"\n', tls)
    (tmp_path / "with").mkdir()
    g = Gateway(text, tmp_path / "with")
    try:
        wait_until(lambda: status(g, "tls.test") == 200, 5, what="routed over tcp:// with TLS")
    finally:
        g.stop()
    (tmp_path / "without").mkdir()        # dockerd --tlsverify refuses a client without a certificate
    g = Gateway(text.replace(f', cert_file = "{dockerd.client.cert}", key_file = "{dockerd.client.key}"', ""),
                tmp_path / "without")
    try:
        error = wait_until(lambda: provider(g)["last_error"], 5, what="refused")
        assert not provider(g)["connected"] and status(g, "tls.test") == 404, error
    finally:
        g.stop()
        dockerd.cli("rm", "-f", "tls-app")
