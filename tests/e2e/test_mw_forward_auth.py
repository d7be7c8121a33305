"""forward-auth through the real binary against a real auth service (authserver.py): allow with header copy
and X-Forwarded-* facts, 401 and 302 passed through untouched, timeout -> 504, unreachable -> 502."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from harness import Backend, Gateway, free_port
from mw_support import Process, assert_error, echoed

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[services.app.load_balancer]
servers = [{url = "%(app)s"}]
[middlewares.allow]
type = "forward-auth"
forward_auth_url = "%(auth)s/allow"
forward_auth_response_headers = ["X-User-Id", "X-Auth-Saw"]
[middlewares.selected]
type = "forward-auth"
forward_auth_url = "%(auth)s/allow"
forward_auth_request_headers = ["Cookie"]
forward_auth_response_headers = ["X-Auth-Saw"]
[middlewares.deny]
type = "forward-auth"
forward_auth_url = "%(auth)s/deny"
[middlewares.redirect]
type = "forward-auth"
forward_auth_url = "%(auth)s/redirect"
[middlewares.slow]
type = "forward-auth"
forward_auth_url = "%(auth)s/slow"
timeout = "300ms"
[middlewares.down]
type = "forward-auth"
forward_auth_url = "http://127.0.0.1:%(dead)d/verify"
"""
CONFIG += "".join(f"""
[routers.{n}]
rule = "PathPrefix(`/{n}`)"
service = "app"
middlewares = ["{n}"]
""" for n in ("allow", "selected", "deny", "redirect", "slow", "down"))


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    app, auth = Backend("app"), Process("authserver.py")
    g = Gateway(CONFIG % {"app": app.url, "auth": auth.url, "dead": free_port()}, tmp_path_factory.mktemp("fa"))
    with httpx.Client(base_url=g.url, timeout=10) as c:
        yield c
    g.stop()
    auth.stop()
    app.stop()


def test_allowed_request_gets_auth_headers_and_auth_saw_the_original_request(client: httpx.Client) -> None:
    r = client.post("/allow/items?x=1", content=b"payload", headers={"X-User-Id": "mallory", "Cookie": "s=1",
                                                                     "Host": "shop.example"})
    seen = echoed(r)
    assert seen["headers"]["x-user-id"] == ["alice"]                 # the client's copy was replaced
    assert (seen["method"], seen["body_len"]) == ("POST", 7)
    saw = json.loads(seen["headers"]["x-auth-saw"][0])
    assert (saw["method"], saw["body_len"]) == ("GET", 0)
    assert (saw["x-forwarded-method"], saw["x-forwarded-uri"], saw["x-forwarded-host"],
            saw["x-forwarded-proto"], saw["x-forwarded-for"]) == ("POST", "/allow/items?x=1", "shop.example",
                                                                  "http", "127.0.0.1")
    assert saw["cookie"] == "s=1" and saw["x-user-id"] == "mallory" and "content-length" not in saw


def test_selected_request_headers_only(client: httpx.Client) -> None:
    saw = json.loads(echoed(client.get("/selected", headers={"Cookie": "s=2", "X-Other": "no"}))["headers"]
                     ["x-auth-saw"][0])
    assert saw["cookie"] == "s=2" and "x-other" not in saw


def test_denial_is_passed_through_with_status_headers_and_body(client: httpx.Client) -> None:
    r = client.get("/deny")
    assert (r.status_code, r.text) == (401, "denied by auth")
    assert r.headers["www-authenticate"] == 'Basic realm="auth"' and r.headers["x-auth-reason"] == "nope"
    assert "x-backend" not in r.headers


def test_redirect_is_passed_through_not_followed(client: httpx.Client) -> None:
    r = client.get("/redirect/page?a=b")
    assert (r.status_code, r.headers["location"]) == (302, "https://login.example/?next=/redirect/page?a=b")


def test_auth_timeout_is_504_and_unreachable_is_502(client: httpx.Client) -> None:
    assert_error(client.get("/slow"), 504, {"error": "Auth service timed out"})
    assert_error(client.get("/down"), 502, {"error": "Auth service unavailable"})
    assert echoed(client.get("/allow/again"))["headers"]["x-user-id"] == ["alice"]   # still serving


def test_workers_close_the_auth_client_session_on_sigterm(tmp_path: Path) -> None:
    """Every worker that asked the auth service stops without aiohttp's "Unclosed client session" error."""
    app, auth = Backend("app"), Process("authserver.py")
    try:
        g = Gateway(CONFIG % {"app": app.url, "auth": auth.url, "dead": free_port()}, tmp_path)
        try:
            with httpx.Client(base_url=g.url, timeout=10) as c:
                for _ in range(20):      # new connections: the kernel spreads them over both workers
                    assert c.get("/allow", headers={"Connection": "close"}).status_code == 200
        finally:
            assert g.stop() == 0
        logs = g.logs()
        assert "Unclosed" not in logs, logs
    finally:
        auth.stop()
        app.stop()
