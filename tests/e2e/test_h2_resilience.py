"""HTTP/2 client streams (h2c prior knowledge) get the resilience HTTP/1.1 requests get, through the real binary
with 2 workers: the ``retry`` middleware moves a stream past a dead backend or a 503 to another backend (HTTP/1.1
and h2c backends), replaying the request body; passive health takes a failing backend out on h2 traffic; sticky
sessions pin streams as they pin HTTP/1.1 requests; the response phase runs for h2c backends; and
whoami@internal says the stream is HTTP/2.0."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Iterator
from typing import Any

import h2.config
import h2.connection
import h2.events
import httpx
import pytest
from aiohttp import web
from h2_client import client_connection, converse
from harness import Backend, Gateway, free_port, wait_until
from proto_backends import LoopThread

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[middlewares.retry]
type = "retry"
max_retries = 2
retry_interval_ms = 10
[routers.whoami]
rule = "PathPrefix(`/whoami`)"
service = "whoami@internal"
[middlewares.stamp]
type = "headers"
response_headers = {X-Stamp = "h2c", Server = ""}
[middlewares.squeeze]
type = "compress"
min_bytes = 10
[routers.h2phase]
rule = "PathPrefix(`/h2phase`)"
service = "h2phase"
middlewares = ["stamp", "squeeze"]
[services.h2phase.load_balancer]
servers = [{url = "h2c://127.0.0.1:H2OK"}]
""" + "".join(f"""
[routers.{name}]
rule = "PathPrefix(`/{name}`)"
service = "{name}"
middlewares = {'["retry"]' if retry else '[]'}
[services.{name}.load_balancer]
servers = [{{url = "{first}"}}, {{url = "{second}"}}]
[services.{name}.load_balancer.passive_health]
{passive}
""" for name, retry, first, second, passive in (
    # retries: passive health off, so the failing backend keeps being tried (round-robin)
    ("dead", True, "http://127.0.0.1:DEAD", "ALIVE", "max_failures = 0"),
    ("busy", True, "BUSY", "ALIVE", "max_failures = 0"),
    ("h2dead", True, "h2c://127.0.0.1:DEAD", "h2c://127.0.0.1:H2OK", "max_failures = 0"),
    ("h2busy", True, "h2c://127.0.0.1:H2BUSY", "h2c://127.0.0.1:H2OK", "max_failures = 0"),
    # passive health, no retry: one failure takes the backend out for a minute
    ("fragile", False, "http://127.0.0.1:DEAD2", "ALIVE", 'max_failures = 1\ncooldown = "60s"'),
    ("h2fragile", False, "h2c://127.0.0.1:H2BUSY", "h2c://127.0.0.1:H2OK",
     'max_failures = 1\ncooldown = "60s"\nstatuses = [503]'),
)) + "".join(f"""
[routers.{name}]
rule = "PathPrefix(`/{name}`)"
service = "{name}"
[services.{name}.load_balancer]
servers = [{{url = "{first}"}}, {{url = "{second}"}}]
[services.{name}.load_balancer.sticky]
cookie = "gw_sticky"
""" for name, first, second in (
    # sticky sessions, to HTTP/1.1 and to h2c backends
    ("stick", "ALIVE", "NEIGHBOUR"),
    ("h2stick", "h2c://127.0.0.1:H2OK", "h2c://127.0.0.1:H2SECOND"),
))


class _H2cConnection(asyncio.Protocol):
    """One connection of ``H2cApp``."""

    def __init__(self, app: H2cApp) -> None:
        self.app = app
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.bodies: dict[int, bytes] = {}
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.conn.initiate_connection()
        transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                self.bodies[event.stream_id] = b""
                if dict(event.headers)[":path"].endswith("/early-hints"):
                    self.conn.send_headers(event.stream_id, [(":status", "103"), ("link", "</app.css>; rel=preload")])
            elif isinstance(event, h2.events.DataReceived):
                self.bodies[event.stream_id] += event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self._answer(event.stream_id, self.bodies.pop(event.stream_id))
        self.transport.write(self.conn.data_to_send())

    def _answer(self, stream_id: int, body: bytes) -> None:
        self.app.requests += 1
        data = json.dumps({"name": self.app.name, "body_len": len(body),
                           "body_sha256": hashlib.sha256(body).hexdigest()}).encode()
        self.conn.send_headers(stream_id, [(":status", str(self.app.status)), ("content-type", "application/json"),
                                           ("content-length", str(len(data))), ("server", "h2c-app")])
        self.conn.send_data(stream_id, data, end_stream=True)


class H2cApp(LoopThread):
    """An h2c backend answering every request with ``status`` and JSON naming itself and the body it got."""

    def __init__(self, name: str, status: int = 200) -> None:
        super().__init__()
        self.name, self.status, self.requests = name, status, 0
        server = self.run(self.loop.create_server(lambda: _H2cConnection(self), "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]


class Busy(LoopThread):
    """An HTTP/1.1 backend that reads the whole request and answers 503, counting requests."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

        async def handle(request: web.Request) -> web.Response:
            await request.read()
            self.requests += 1
            return web.json_response({"name": "busy"}, status=503)

        async def start() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()

        self.run(start())


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    alive, neighbour, busy = Backend("alive"), Backend("neighbour"), Busy()
    h2ok, h2second, h2busy = H2cApp("h2c-ok"), H2cApp("h2c-second"), H2cApp("h2c-busy", 503)
    dead, dead2 = free_port(), free_port()
    config = (CONFIG.replace("DEAD2", str(dead2)).replace("DEAD", str(dead)).replace("ALIVE", alive.url)
              .replace("NEIGHBOUR", neighbour.url).replace("H2OK", str(h2ok.port))
              .replace("H2SECOND", str(h2second.port)).replace("H2BUSY", str(h2busy.port)).replace("BUSY", busy.url))
    g = Gateway(config, tmp_path_factory.mktemp("gw"), workers=2)
    yield {"gw": g, "busy": busy, "h2busy": h2busy, "dead2": dead2}
    g.stop()
    for server in (busy, h2ok, h2second, h2busy):
        server.stop()
    alive.stop()
    neighbour.stop()


@pytest.fixture
def client(env: dict[str, Any]) -> Iterator[httpx.Client]:
    """An HTTP/2 client with prior knowledge (h2c): every request is a stream."""
    with httpx.Client(base_url=env["gw"].url, http1=False, http2=True, timeout=10) as c:
        yield c


def _retries(g: Gateway, router: str) -> float:
    text = httpx.get(g.admin + "/api/gateway/metrics").text
    m = re.search(rf'^a3s_gateway_retries_total{{router="{router}"}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def _server(g: Gateway, service: str, port: int) -> dict[str, Any]:
    servers = httpx.get(f"{g.admin}/api/services/{service}").json()["servers"]
    return next(s for s in servers if s["url"].endswith(f":{port}"))


def test_h2_stream_retry_moves_past_a_dead_backend(env: dict[str, Any], client: httpx.Client) -> None:
    g = env["gw"]
    replies = [client.get("/dead/x") for _ in range(8)]
    assert [r.status_code for r in replies] == [200] * 8 and {r.http_version for r in replies} == {"HTTP/2"}
    assert {r.json()["name"] for r in replies} == {"alive"}
    wait_until(lambda: _retries(g, "dead") >= 1, what="retries counted for router dead")


def test_h2_stream_retry_moves_past_a_503_with_the_body_replayed(env: dict[str, Any], client: httpx.Client) -> None:
    body = bytes(range(256)) * 200
    before = env["busy"].requests
    for _ in range(6):                         # PUT is idempotent: a 503 after the body went out is retried
        r = client.put("/busy/upload", content=body)
        assert r.status_code == 200 and r.http_version == "HTTP/2"
        seen = r.json()
        assert (seen["name"], seen["body_len"]) == ("alive", len(body))
        assert seen["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert env["busy"].requests > before       # the 503 backend was really asked (and its answer dropped)


def test_h2_stream_post_is_replayed_past_a_dead_backend(client: httpx.Client) -> None:
    body = b"payload" * 5000
    for _ in range(6):                         # a POST is retried only when the backend never got it
        seen = client.post("/dead/upload", content=body).json()
        assert seen["body_len"] == len(body) and seen["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_h2_stream_retry_to_h2c_backends(env: dict[str, Any], client: httpx.Client) -> None:
    body = b"h2c body " * 3000
    before = env["h2busy"].requests
    for path in ("/h2dead/x", "/h2busy/x"):
        replies = [client.put(path, content=body) for _ in range(6)]
        assert [r.status_code for r in replies] == [200] * 6, path
        assert {(r.json()["name"], r.json()["body_len"]) for r in replies} == {("h2c-ok", len(body))}
    assert env["h2busy"].requests > before


def test_h2_stream_failures_take_a_backend_out_by_passive_health(env: dict[str, Any], client: httpx.Client) -> None:
    g = env["gw"]

    def down(service: str, port: int, path: str) -> bool:
        client.get(path)                       # h2 traffic only: the failures are seen on streams
        return _server(g, service, port)["passive"]["down_for_s"] > 0

    wait_until(lambda: down("fragile", env["dead2"], "/fragile/x"), 5,
               what="the dead backend taken out by failed h2 streams")
    assert {client.get("/fragile/x").status_code for _ in range(10)} == {200}
    wait_until(lambda: down("h2fragile", env["h2busy"].port, "/h2fragile/x"), 5,
               what="the h2c backend answering 503 taken out by h2 streams")
    assert {client.get("/h2fragile/x").json()["name"] for _ in range(10)} == {"h2c-ok"}


def test_whoami_over_h2_says_http2(client: httpx.Client) -> None:
    r = client.get("/whoami")
    assert r.http_version == "HTTP/2" and r.json()["proto"] == "HTTP/2.0"


@pytest.mark.parametrize("service, names", [("stick", {"alive", "neighbour"}), ("h2stick", {"h2c-ok", "h2c-second"})])
def test_sticky_cookie_pins_h2_streams(env: dict[str, Any], service: str, names: set[str]) -> None:
    g = env["gw"]

    def get(cookie: str | None = None) -> httpx.Response:
        """A new connection each time, so either worker may take it."""
        with httpx.Client(http1=False, http2=True, timeout=10) as c:
            return c.get(f"{g.url}/{service}/x", headers={"cookie": f"gw_sticky={cookie}"} if cookie else {})

    first = get()
    cookie = first.cookies.get("gw_sticky")
    assert first.http_version == "HTTP/2" and cookie
    assert "HttpOnly" in first.headers["set-cookie"]
    pinned = first.json()["name"]
    pinned_replies = [get(cookie) for _ in range(12)]
    assert {r.json()["name"] for r in pinned_replies} == {pinned}
    assert all("set-cookie" not in r.headers for r in pinned_replies)     # a bound session gets no new cookie
    assert {get().json()["name"] for _ in range(12)} == names             # without it, round-robin spreads them


def test_response_phase_runs_for_h2c_backends(client: httpx.Client) -> None:
    """The route's middlewares change the response of an h2c backend as they do an HTTP/1.1 one's: headers set
    and removed, the body compressed as a stream (and its length dropped)."""
    r = client.get("/h2phase/x", headers={"accept-encoding": "gzip"})
    assert (r.status_code, r.http_version) == (200, "HTTP/2")
    assert r.headers["x-stamp"] == "h2c" and "server" not in r.headers
    assert r.headers["content-encoding"] == "gzip" and "content-length" not in r.headers
    assert r.json()["name"] == "h2c-ok"                  # httpx decoded the gzip stream
    plain = client.get("/h2phase/x", headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.headers["x-stamp"] == "h2c"


def test_early_hints_from_an_h2c_backend_reach_the_h2_client(env: dict[str, Any]) -> None:
    """A 1xx from an h2c backend is relayed as an informational HEADERS block, before the response."""
    conn = client_connection()
    conn.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "h2.test"),
                          (":path", "/h2phase/early-hints")], end_stream=True)
    heads: list[dict[str, str]] = []

    def handle(event: h2.events.Event) -> bool:
        if isinstance(event, (h2.events.InformationalResponseReceived, h2.events.ResponseReceived)):
            heads.append(dict(event.headers))
        elif isinstance(event, h2.events.DataReceived):
            conn.acknowledge_received_data(event.flow_controlled_length, 1)
        return isinstance(event, h2.events.StreamEnded)

    converse(env["gw"].port, conn, handle)
    assert [head[":status"] for head in heads] == ["103", "200"]
    assert heads[0]["link"] == "</app.css>; rel=preload" and heads[1]["x-stamp"] == "h2c"
