"""The ``docker`` executor against a real dockerd (Debian's docker.io, the busybox image made offline): 0 → 1 → 0
with our labels, adoption after a restart, and the faults (an image that does not exist, a command that exits)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
from a3s_gateway.master.serving.executors.docker import DockerExecutor
from harness import free_port
from serving_support import Changes, until
from stores import IMAGE

HTTPD = ["httpd", "-f", "-p", "127.0.0.1:{port}", "-h", "/www"]


def settings(dockerd: Any, **more: Any) -> dict[str, Any]:
    low = free_port()
    return {"socket": str(dockerd.socket), "image": IMAGE, "command": HTTPD, "ports": f"{low}-{low + 20}",
            "stop_timeout": "1s", "max_backoff": "500ms", **more}


def ours(dockerd: Any, revision: str = "v1") -> list[dict[str, Any]]:
    ids = dockerd.cli("ps", "-aq", "--filter", "label=a3s.serving.service=svc", "--filter",
                      f"label=a3s.serving.revision={revision}").split()
    return json.loads(dockerd.cli("inspect", *ids)) if ids else []


def answers(address: str) -> bool:
    try:
        return httpx.get(f"http://{address}/", timeout=1).text == "hello from a container\n"
    except httpx.HTTPError:
        return False


def test_scale_0_to_1_to_0_runs_a_labelled_container_that_answers_then_removes_it(dockerd):
    async def main() -> None:
        changes = Changes()
        ex = DockerExecutor("svc", "v1", settings(dockerd, env={"GREETING": "port {port}"}), changes)
        try:
            started = time.monotonic()
            await ex.scale(1)
            ready = await until(lambda: [i for i in ex.instances() if i.state == "ready"], 20, "a running container")
            address = ready[0].address
            await until(lambda: answers(address), 10, "the container's httpd")
            print(f"scale(1) to the container answering: {time.monotonic() - started:.3f}s")
            [container] = ours(dockerd)
            port = address.rpartition(":")[2]
            labels = container["Config"]["Labels"]
            assert {k: v for k, v in labels.items() if k != "a3s.serving.instance"} == {
                "a3s.serving.service": "svc", "a3s.serving.revision": "v1", "a3s.serving.port": port}
            assert len(labels["a3s.serving.instance"]) == 8
            assert container["Id"] == ready[0].id and container["HostConfig"]["NetworkMode"] == "host"
            assert {f"PORT={port}", f"GREETING=port {port}"} <= set(container["Config"]["Env"])
            assert container["Config"]["Cmd"] == ["httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/www"]
            await ex.scale(1)                       # idempotent: still one
            await ex.scale(0)
            await until(lambda: ex.instances() == [], 20, "the container stopped")
            assert ours(dockerd) == [] and ex.last_error is None and changes.calls >= 2
        finally:
            await ex.close()
    asyncio.run(main())


def test_a_restarted_gateway_adopts_running_containers_and_removes_stopped_ones(dockerd):
    async def main() -> None:
        conf = settings(dockerd)
        first = DockerExecutor("svc", "v2", conf, Changes())
        await first.scale(2)
        await until(lambda: len([i for i in first.instances() if i.state == "ready"]) == 2, 20, "two containers")
        running = sorted(i.id for i in first.instances())
        await first.detach()                    # the gateway dies: its containers stay
        stale = dockerd.cli("create", "-l", "a3s.serving.service=svc", "-l", "a3s.serving.revision=v2", "-l",
                            "a3s.serving.port=1", IMAGE, "true")
        second = DockerExecutor("svc", "v2", conf, Changes())
        try:
            await second.scale(2)
            await until(lambda: len(second.instances()) == 2, 20, "adopted")
            assert sorted(i.id for i in second.instances()) == running
            assert stale not in {c["Id"] for c in ours(dockerd, "v2")}
        finally:
            await second.close()
        assert ours(dockerd, "v2") == []
    asyncio.run(main())


def test_a_reload_hands_the_containers_to_the_new_executor_without_restarting_them(dockerd):
    async def main() -> None:
        conf = settings(dockerd)
        old = DockerExecutor("svc", "v5", conf, Changes())
        await old.scale(1)
        await until(lambda: [i for i in old.instances() if i.state == "ready"], 20, "a running container")
        before = [i.id for i in old.instances()]
        new = DockerExecutor("svc", "v5", conf, Changes())
        try:
            new.adopt(old)
            assert [i.id for i in new.instances()] == before        # at once, before any I/O
            await until(lambda: old._task is None and old.session is None, 10, "the old executor detached")
            await new.scale(1)
            await until(lambda: new.describe()["desired"] == 1 and new.session is not None, 10, "set up")
            assert [c["Id"] for c in ours(dockerd, "v5")] == before
        finally:
            await new.close()
        assert ours(dockerd, "v5") == [] and new.instances() == []
    asyncio.run(main())


def test_an_image_that_does_not_exist_is_an_error_retried_with_a_bounded_backoff(dockerd):
    async def main() -> None:
        ex = DockerExecutor("svc", "v3", settings(dockerd, image="a3s/no-such-image:1"), Changes())
        try:
            await ex.scale(1)
            await until(lambda: ex.errors >= 3, 20, "repeated failures")
            assert ex.last_error.startswith("image 'a3s/no-such-image:1' is not on the daemon (pull it first)")
            assert 0 < (ex.describe()["retry_in_s"] or 0.5) <= 0.5 and ex.instances() == []
            assert ours(dockerd, "v3") == []
        finally:
            await ex.close()
    asyncio.run(main())


def test_a_command_that_exits_at_once_reports_its_exit_code_and_output_and_is_replaced_after_backoff(dockerd):
    async def main() -> None:
        ex = DockerExecutor("svc", "v4", settings(dockerd, command=["sh", "-c", "echo boom on {port}; exit 3"]),
                            Changes())
        try:
            await ex.scale(1)
            await until(lambda: ex.errors >= 2, 30, "two crashes")
            assert "exited with code 3: boom on " in ex.last_error
            assert len(ours(dockerd, "v4")) <= 1        # each dead container is removed before its replacement
        finally:
            await ex.close()
        assert ours(dockerd, "v4") == []
    asyncio.run(main())


def test_validate_lists_every_problem():
    assert DockerExecutor.validate({"image": "x"}) == []
    assert DockerExecutor.validate({"command": "httpd", "ports": "9-1", "env": {"A": True}, "pull": True}) == [
        "image: required",
        "command: expected a list of strings, got 'httpd'",
        "env: expected a table of strings, got {'A': True}",
        "ports: expected a port range like '30000-30099' within 1-65535, got '9-1'",
        "pull: unknown setting (known: command, env, host_address, image, max_backoff, network, ports, "
        "socket, stop_timeout)"]
