"""WebSocket through the real binary with the ``websockets`` client and server: echo of text and binary frames,
a 1 MiB message, close codes, a refused upgrade, the request phase of the middleware chain, and open sockets
surviving a reload (SIGHUP) that changes an unrelated route."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from harness import Gateway
from proto_backends import WebSocketEcho
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"

[routers.ws]
rule = "PathPrefix(`/`)"
service = "ws"
[routers.other]
rule = "PathPrefix(`/other`)"
service = "whoami@internal"
[services.ws.load_balancer]
servers = [{url = "{backend}"}]
"""


@pytest.fixture(scope="module")
def echo() -> Iterator[WebSocketEcho]:
    server = WebSocketEcho()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, echo: WebSocketEcho) -> Iterator[Gateway]:
    g = Gateway(CONFIG.replace("{backend}", echo.url), tmp_path_factory.mktemp("gw"))
    yield g
    g.stop()


def ws_url(gw: Gateway, path: str = "/echo") -> str:
    return f"ws://127.0.0.1:{gw.port}{path}"


def test_text_and_binary_frames_echo(gw: Gateway) -> None:
    with connect(ws_url(gw)) as ws:
        for i in range(20):
            ws.send(f"hello {i}")
            assert ws.recv(timeout=5) == f"hello {i}"
        ws.send(bytes(range(256)))
        assert ws.recv(timeout=5) == bytes(range(256))


def test_one_mebibyte_message(gw: Gateway) -> None:
    payload = bytes(range(256)) * 4096
    with connect(ws_url(gw), max_size=None) as ws:
        ws.send(payload)
        assert ws.recv(timeout=10) == payload


def test_close_code_reaches_the_client(gw: Gateway) -> None:
    with connect(ws_url(gw, "/close/4001")) as ws:
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 4001 and info.value.rcvd.reason == "bye"


def test_forwarding_headers_reach_the_backend(gw: Gateway) -> None:
    with connect(ws_url(gw, "/headers")) as ws:
        headers = json.loads(ws.recv(timeout=5))
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-real-ip"] == "127.0.0.1"
    assert headers["upgrade"] == "websocket"


def test_refused_upgrade_is_relayed_as_a_response(gw: Gateway) -> None:
    with pytest.raises(InvalidStatus) as info:
        connect(ws_url(gw, "/reject"))
    assert info.value.response.status_code == 403
    assert info.value.response.body == b"denied"


def test_non_websocket_upgrade_is_refused(gw: Gateway) -> None:
    r = httpx.get(f"{gw.url}/x", headers={"Connection": "Upgrade", "Upgrade": "h2c"})
    assert r.status_code == 501


def test_open_websocket_survives_a_reload_of_an_unrelated_route(gw: Gateway, echo: WebSocketEcho) -> None:
    with connect(ws_url(gw)) as ws:
        ws.send("before")
        assert ws.recv(timeout=5) == "before"
        before = gw.health()["generation"]
        new = CONFIG.replace("{backend}", echo.url).replace("PathPrefix(`/other`)", "PathPrefix(`/changed`)")
        assert gw.reload(new) == before + 1
        assert httpx.get(f"{gw.url}/changed").status_code == 200
        ws.send("after")
        assert ws.recv(timeout=5) == "after"


def test_middleware_request_phase_applies_to_the_upgrade(tmp_path_factory: pytest.TempPathFactory,
                                                          echo: WebSocketEcho) -> None:
    config = CONFIG.replace("{backend}", echo.url).replace('service = "ws"', 'service = "ws"\nmiddlewares = ["auth"]')
    config += '[middlewares.auth]\ntype = "basic-auth"\nusername = "u"\npassword = "p"\n'
    g = Gateway(config, tmp_path_factory.mktemp("gw-auth"))
    try:
        with pytest.raises(InvalidStatus) as info:
            connect(ws_url(g))
        assert info.value.response.status_code == 401
        with connect(ws_url(g), additional_headers={"Authorization": "Basic dTpw"}) as ws:
            ws.send("authed")
            assert ws.recv(timeout=5) == "authed"
    finally:
        g.stop()
