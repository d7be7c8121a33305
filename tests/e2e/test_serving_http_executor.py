"""The ``http`` executor against a real scale endpoint (an aiohttp "box" on 127.0.0.1) that starts instances by
registering them through the registration routes over HTTP; and those routes in the real gateway's admin API."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from a3s_gateway.master.serving.executors.http import HttpExecutor
from a3s_gateway.master.serving.registration import Registrations, add_routes
from aiohttp import ClientSession, web
from harness import Gateway, free_port, wait_until
from serving_support import Changes, until

REG_TOKEN = "reg-secret-1"
SCALE_TOKEN = "scale-secret-2"


class Box:
    """A scale endpoint that, for ``replicas: n``, registers (or deregisters) instances to reach n, as a Box
    would after starting them; it records every call with its Authorization header."""

    def __init__(self, gateway_url: str, status: int = 200) -> None:
        self.gateway_url = gateway_url
        self.status = status
        self.calls: list[dict[str, Any]] = []
        self.running: list[str] = []
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    async def start(self) -> Box:
        app = web.Application()
        app.router.add_post("/scale", self.scale)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def scale(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append({**body, "authorization": request.headers.get("Authorization")})
        if self.status != 200:
            return web.Response(status=self.status, text="box is full")
        headers = {"Authorization": f"Bearer {REG_TOKEN}"}
        async with ClientSession(self.gateway_url, headers=headers) as s:
            while len(self.running) < body["replicas"]:
                address = f"127.0.0.1:{40000 + len(self.running)}"
                async with s.post("/api/serving/register", json={"service": body["service"],
                                  "revision": body["revision"], "address": address}) as r:
                    assert r.status == 200, await r.text()
                self.running.append(address)
            while len(self.running) > body["replicas"]:
                async with s.post("/api/serving/deregister", json={"service": body["service"],
                                  "revision": body["revision"], "address": self.running.pop()}) as r:
                    assert (await r.json())["removed"] is True
        return web.json_response({"replicas": body["replicas"]})

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def admin_api(registry: Registrations) -> tuple[web.AppRunner, str]:
    """The registration routes on their own aiohttp app, as the admin API mounts them."""
    app = web.Application()
    add_routes(app, registry)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


def settings(url: str, **more: Any) -> dict[str, Any]:
    return {"scale_url": url, "token": SCALE_TOKEN, "registration_token": REG_TOKEN, "max_backoff": "400ms",
            **more}


@contextlib.asynccontextmanager
async def world(registry: Registrations, status: int = 200, up: bool = True,
                changes: Changes | None = None) -> AsyncIterator[tuple[Box, HttpExecutor, str]]:
    """The registration routes, a box (listening when ``up``) and an executor scaling through it."""
    runner, api = await admin_api(registry)
    box = Box(api, status)
    if up:
        await box.start()
    ex = HttpExecutor("svc", "v1", settings(f"http://127.0.0.1:{box.port}/scale"), changes or Changes())
    try:
        yield box, ex, api
    finally:
        await ex.close()
        await box.stop()
        await runner.cleanup()


@pytest.fixture(autouse=True)
def own_registry(monkeypatch: pytest.MonkeyPatch) -> Registrations:
    registry = Registrations()
    monkeypatch.setattr(HttpExecutor, "registry", registry)
    return registry


def test_scale_posts_replicas_with_the_token_and_registered_instances_become_instances(own_registry):
    async def main() -> None:
        changes = Changes()
        async with world(own_registry, changes=changes) as (box, ex, _):
            await ex.scale(2)
            await until(lambda: len(ex.instances()) == 2, 5, "two registered instances")
            assert box.calls == [{"service": "svc", "revision": "v1", "replicas": 2,
                                  "authorization": f"Bearer {SCALE_TOKEN}"}]
            assert {i.state for i in ex.instances()} == {"ready"} and changes.calls == 2
            await ex.scale(2)                   # the same wish again: nothing posted
            await ex.scale(1)
            await until(lambda: len(ex.instances()) == 1, 5, "one instance left")
            assert [c["replicas"] for c in box.calls] == [2, 1]
            assert ex.describe() == {"kind": "http", "last_error": None, "errors": 0, "desired": 1,
                                     "retry_in_s": None, "acknowledged": 1}
            await ex.close()                    # the gateway stopping: the box is told 0, registrations go
            assert box.calls[-1]["replicas"] == 0 and own_registry.instances("svc", "v1") == []
    asyncio.run(main())


def test_a_refusing_scale_url_is_an_error_retried_with_a_bounded_backoff_until_it_answers(own_registry):
    async def main() -> None:
        async with world(own_registry, up=False) as (box, ex, _):
            await ex.scale(1)
            await until(lambda: ex.errors >= 3, 10, "repeated failures")
            assert "cannot reach scale URL" in ex.last_error and ex.acknowledged is None
            assert 0 < (ex.describe()["retry_in_s"] or 0.4) <= 0.4       # capped by max_backoff
            await box.start()                   # the box comes up: the next retry goes through
            await until(lambda: ex.acknowledged == 1, 5, "the retry to succeed")
            assert ex.last_error is None and len(ex.instances()) == 1
    asyncio.run(main())


def test_scale_returns_at_once_while_a_scale_url_that_never_answers_times_out(own_registry):
    async def main() -> None:
        silent = socket.socket()                # listens, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/scale"
        ex = HttpExecutor("svc", "v1", settings(url, timeout="300ms"), Changes())
        try:
            await asyncio.wait_for(ex.scale(1), 5)      # no I/O in scale itself
            assert ex.last_error is None
            await until(lambda: ex.last_error, 10, "the timeout recorded")
            assert ex.last_error == f"cannot reach scale URL {url}: TimeoutError"
        finally:
            await ex.close()
            silent.close()
    asyncio.run(main())


def test_an_error_status_from_the_scale_url_is_recorded_with_its_body(own_registry):
    async def main() -> None:
        async with world(own_registry, status=503) as (box, ex, _):
            await ex.scale(3)
            await until(lambda: ex.last_error, 5, "the 503 recorded")
            assert "answered 503: box is full" in ex.last_error and ex.instances() == []
    asyncio.run(main())


def test_registration_refuses_a_wrong_token_an_unknown_revision_and_a_bad_address(own_registry):
    async def main() -> None:
        async with world(own_registry, up=False) as (_, ex, api):
            async with ClientSession(api) as s:
                body = {"service": "svc", "revision": "v1", "address": "127.0.0.1:9"}
                async with s.post("/api/serving/register", json=body, headers={"Authorization": "Bearer nope"}) as r:
                    assert r.status == 401 and "nope" not in await r.text() and REG_TOKEN not in await r.text()
                async with s.post("/api/serving/register", json=body) as r:
                    assert r.status == 401
                good = {"Authorization": f"Bearer {REG_TOKEN}"}
                async with s.post("/api/serving/register", json={**body, "revision": "v9"}, headers=good) as r:
                    assert r.status == 404 and "svc/v9" in (await r.json())["error"]
                async with s.post("/api/serving/register", json={**body, "address": "nohost"}, headers=good) as r:
                    assert r.status == 400 and "address" in (await r.json())["error"]
                async with s.post("/api/serving/register", data=b"{", headers=good) as r:
                    assert r.status == 400
                async with s.post("/api/serving/register", json={**body, "id": "pod-a", "state": "starting"},
                                  headers=good) as r:
                    assert await r.json() == {"id": "pod-a", "address": "127.0.0.1:9", "state": "starting"}
            assert [(i.id, i.state) for i in ex.instances()] == [("pod-a", "starting")]
            # a reload that keeps the revision: the new executor sees the same registrations
            again = HttpExecutor("svc", "v1", settings("http://127.0.0.1:1/scale"), Changes())
            again.adopt(ex)
            assert [i.id for i in again.instances()] == ["pod-a"]
            await ex.close()                    # the replaced executor closing late leaves them to the new one
            assert [i.id for i in again.instances()] == ["pod-a"]
            await again.close()
            assert again.instances() == []
    asyncio.run(main())


def test_validate_lists_every_problem_with_its_key(monkeypatch):
    monkeypatch.delenv("A3S_TEST_UNSET", raising=False)
    assert HttpExecutor.validate(settings("http://box/scale")) == []
    errors = HttpExecutor.validate({"scale_url": "ftp://x", "timeout": "soon", "registration_token_env":
                                    "A3S_TEST_UNSET", "replicas": 3})
    assert errors == ["registration_token_env: environment variable A3S_TEST_UNSET is not set",
                      "timeout: expected a duration like '10s' or '500ms', got 'soon'",
                      "scale_url: expected an http:// or https:// URL, got 'ftp://x'",
                      "replicas: unknown setting (known: max_backoff, registration_token, registration_token_env, "
                      "scale_url, timeout, token, token_env)"]
    assert HttpExecutor.validate({}) == [
        "scale_url: required", "registration_token: required (instances send it to register; or "
        "registration_token_env)"]
    monkeypatch.setenv("A3S_TEST_TOKEN", "from-env")
    ex = HttpExecutor("s", "r", {"scale_url": "http://box/", "token_env": "A3S_TEST_TOKEN",
                                 "registration_token": "x"}, Changes())
    assert ex.config.token == "from-env" and "from-env" not in str(ex.describe())


def test_the_gateway_admin_api_serves_registration_with_the_revision_token_not_the_admin_token(tmp_path):
    config = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
token = "admin-secret"
"""
    g = Gateway(config, tmp_path, wait=False)
    try:
        wait_until(lambda: httpx.get(g.admin + "/api/gateway/health", headers={"Authorization": "Bearer admin-secret"})
                   .json()["state"] == "running", 20, what="gateway running")
        body = {"service": "svc", "revision": "v1", "address": "127.0.0.1:9"}
        r = httpx.post(g.admin + "/api/serving/register", json=body, headers={"Authorization": "Bearer x"})
        assert r.status_code == 404 and r.json() == {"error": "no http-executor revision svc/v1 on this gateway"}
        r = httpx.get(g.admin + "/api/serving/register", headers={"Authorization": "Bearer admin-secret"})
        assert r.status_code == 405 and "error" in r.json()
        assert httpx.get(g.admin + "/api/routers").status_code == 401     # the rest still needs the admin token
    finally:
        g.stop()
