"""The same requests over HTTP/1.1, h2c (prior knowledge) and HTTP/2 over TLS (ALPN), through the real binary
(two workers) in front of real backends: every rule matcher, what the backend sees, whoami@internal,
gateway-made errors (404, 502, 503, 504), retries, sticky sessions and request trailers must look the same to the
client and to the backend whatever protocol the client speaks. One gateway (both_protocols.py) serves every case
and protocol of the module.

Each test is parametrized by ``proto``; its assertions are fixed values, so a case passing on one protocol and
failing on another is a protocol-dependent bug in the worker. Middlewares are in test_both_protocols_middlewares.py,
the ACME HTTP-01 answer in test_both_protocols_acme.py.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import h2.events
import httpx
import pytest
from both_protocols import PROTOCOLS, TLS_NAME, Client, Env, gateway_env, routed_to
from h2_client import client_connection
from h3_client import H3Transport
from harness import wait_until
from mw_support import assert_error, echoed
from recording_backend import RawClient


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    yield from gateway_env(tmp_path_factory)


@pytest.fixture(params=PROTOCOLS)
def client(request: pytest.FixtureRequest, env: Env) -> Client:
    return Client(env, request.param)


# ------------------------------------------------------------------------------------------------ matchers

@pytest.mark.parametrize("host,expected", [("api.example.com", (200, "a")), ("API.Example.com:8080", (200, "a")),
                                           ("abc.regex.test", (200, "b")), ("ab1.regex.test", (404, None))])
def test_host_and_host_regexp_route_by_the_request_authority(client: Client, host: str, expected: tuple) -> None:
    assert routed_to(client.get("/", headers={"Host": host})) == expected


@pytest.mark.parametrize("method,path,expected", [
    ("GET", "/exact", (200, "a")), ("GET", "/exact/more", (404, None)),
    ("GET", "/pre", (200, "b")), ("GET", "/prefix/x", (200, "b")),
    ("GET", "/items/42", (200, "a")), ("GET", "/items/abc", (404, None)),
    ("DELETE", "/m", (200, "b")), ("GET", "/m", (404, None)),
    ("GET", "/q?debug=1", (200, "b")), ("GET", "/q?debug=0", (404, None)),
    ("GET", "/qr?id=123", (200, "a")), ("GET", "/qr?id=12a", (404, None)),
    ("GET", "/ip", (200, "b")), ("GET", "/net10", (404, None)),
    ("GET", "/or1", (200, "a")), ("GET", "/or2", (200, "a")), ("POST", "/or1", (404, None)),
])
def test_path_method_query_client_ip_and_combinators_route_alike(client: Client, method: str, path: str,
                                                                 expected: tuple) -> None:
    assert routed_to(client.request(method, path)) == expected


@pytest.mark.parametrize("path,headers,expected", [
    ("/h", {"X-Tenant": "blue"}, (200, "a")), ("/h", {"x-tenant": "blue"}, (200, "a")),
    ("/h", {"X-Tenant": "red"}, (404, None)),
    ("/hr", {"X-Version": "v12"}, (200, "b")), ("/hr", {"X-Version": "12"}, (404, None)),
])
def test_header_and_header_regexp_route_alike(client: Client, path: str, headers: dict, expected: tuple) -> None:
    assert routed_to(client.get(path, headers=headers)) == expected


def test_header_matcher_sees_the_client_x_forwarded_for(client: Client) -> None:
    """Matchers see the client's own header list on every protocol: a rule on X-Forwarded-For matches the
    value the client sent, not the one the gateway forwards (over HTTP/2 it did not match: 404)."""
    r = client.get("/xff", headers={"X-Forwarded-For": "1.2.3.4"})
    assert routed_to(r) == (200, "b"), r.text
    assert r.json()["headers"]["x-forwarded-for"] == ["127.0.0.1"]     # an untrusted client's value is replaced


def test_no_route_is_404_with_json_body(client: Client) -> None:
    assert_error(client.get("/nothing-here"), 404, {"error": "No route matched"})


# ------------------------------------------------------------------------------ what the backend sees

def test_backend_sees_method_path_query_body_and_headers_alike(client: Client) -> None:
    body = b"0123456789" * 300
    seen = echoed(client.post("/pre/x%20y?a=1&b=2", content=body,
                              headers={"X-Custom": "one", "Content-Type": "application/octet-stream"}))
    assert (seen["method"], seen["raw_path"], seen["query"]) == ("POST", "/pre/x%20y?a=1&b=2", "a=1&b=2")
    assert (seen["body_len"], seen["version"]) == (3000, "1.1")
    h = seen["headers"]
    assert h["x-custom"] == ["one"] and h["content-type"] == ["application/octet-stream"]
    assert h["host"] == [client.authority]
    assert h["x-forwarded-for"] == ["127.0.0.1"]
    assert h["x-forwarded-proto"] == [client.scheme]
    assert h["x-forwarded-host"] == [client.authority]
    assert not {"connection", "keep-alive", "upgrade", "http2-settings", "te"} & set(h)


def test_whoami_internal_echoes_the_request(client: Client) -> None:
    r = client.get("/whoami/x?y=1", headers={"X-Who": "me"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    who = r.json()
    assert (who["method"], who["path"], who["client"]["ip"]) == ("GET", "/whoami/x?y=1", "127.0.0.1")
    # header names as received: the client's case over HTTP/1.1, lowercase (as HTTP/2 requires) over HTTP/2
    assert {k.lower(): v for k, v in who["headers"].items()}["x-who"] == ["me"]
    assert who["proto"] == {"http1": "HTTP/1.1", "h3": "HTTP/3"}.get(client.proto, "HTTP/2.0")


def test_whoami_internal_lists_header_fields_without_http2_pseudo_headers(client: Client) -> None:
    """The echo's ``headers`` are the request's header fields; HTTP/2's :method, :path... are not among them."""
    who = client.get("/whoami").json()
    assert [k for k in who["headers"] if k.startswith(":")] == []


# -------------------------------------------------------------------------------------- retries, affinity

def backend_requests(env: Env) -> int:
    return httpx.get(f"{env.counted.url}/stats", timeout=5).json()["requests"]


def test_retry_moves_connection_failures_to_the_live_backend(client: Client) -> None:
    assert {routed_to(client.get("/retry/x")) for _ in range(4)} == {(200, "counted")}
    assert echoed(client.post("/retry/upload", content=b"payload" * 100))["body_len"] == 700


def test_retry_on_5xx_retries_idempotent_requests_only(client: Client) -> None:
    before = backend_requests(client.env)
    assert client.get("/rstatus/status/503").status_code == 503
    assert backend_requests(client.env) - before == 3            # 1 try + 2 retries
    before = backend_requests(client.env)
    assert client.post("/rstatus/status/503").status_code == 503
    assert backend_requests(client.env) - before == 1


def test_sticky_cookie_pins_the_backend_across_connections(client: Client) -> None:
    first = client.get("/stick/x", fresh=True)
    cookie = first.cookies.get("gw_sticky")
    assert first.status_code == 200 and cookie, first.headers
    pinned = first.headers["x-backend"]
    replies = [client.get("/stick/x", fresh=True, headers={"Cookie": f"gw_sticky={cookie}"}) for _ in range(6)]
    assert {r.headers["x-backend"] for r in replies} == {pinned}
    assert all("set-cookie" not in r.headers for r in replies)
    assert {client.get("/stick/x", fresh=True).headers["x-backend"] for _ in range(6)} == {"a", "b"}


# ----------------------------------------------------------------------------------- gateway-made errors

def test_connection_refused_is_502_json(client: Client) -> None:
    r = client.get("/dead/x")
    assert r.status_code == 502 and r.headers["content-type"] == "application/json"
    assert r.json()["error"].startswith("Bad gateway: cannot connect to backend")


def test_no_healthy_backend_is_503_json(client: Client) -> None:
    r = wait_until(lambda: (lambda r: r if r.status_code == 503 else None)(client.get("/down/x")),
                   what="the health check takes the backend out")
    assert_error(r, 503, {"error": "No healthy backends"})


def test_response_header_timeout_is_504_json_and_the_connection_stays_usable(client: Client) -> None:
    assert_error(client.get("/delay/1"), 504, {"error": "Gateway timeout: backend did not answer in time"})
    assert routed_to(client.get("/exact")) == (200, "a")


# ---------------------------------------------------------------------------------------------- trailers

def post_with_trailers(client: Client, path: str, chunks: list[bytes],
                       trailers: list[tuple[str, str]]) -> tuple[int, dict[str, Any]]:
    """A POST whose streamed body ends with a trailer section (chunked over HTTP/1.1, a HEADERS block after the
    DATA frames over HTTP/2 and HTTP/3), sent by hand as no high-level client sends trailers: (status, JSON body)."""
    gw = client.env.gw
    if client.proto == "http1":
        raw = RawClient(gw.port)
        try:
            head = f"POST {path} HTTP/1.1\r\nHost: {client.authority}\r\nTransfer-Encoding: chunked\r\n\r\n"
            body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
            tail = "".join(f"{k}: {v}\r\n" for k, v in trailers).encode()
            assert raw.send(head.encode() + body + b"0\r\n" + tail + b"\r\n")
            answer = raw.read_response()
        finally:
            raw.close()
        assert answer is not None, "no response"
        return answer[0], json.loads(answer[2])
    if client.proto == "h3":
        h3 = H3Transport(gw.ports["secure"], str(client.env.ca.path), TLS_NAME)
        try:
            got = h3.request_with_trailers("POST", client.authority, path, chunks,
                                           [(k.encode(), v.encode()) for k, v in trailers])
        finally:
            h3.close()
        assert got.reset is None, f"stream reset with {got.reset:#x}"
        return got.status, json.loads(got.body)
    conn = client_connection()
    sock = socket.create_connection(("127.0.0.1", gw.port if client.proto == "h2c" else gw.ports["secure"]),
                                    timeout=10)
    if client.proto == "h2-tls":
        ctx = ssl.create_default_context(cafile=str(client.env.ca.path))
        ctx.set_alpn_protocols(["h2"])
        sock = ctx.wrap_socket(sock, server_hostname=TLS_NAME)
        assert sock.selected_alpn_protocol() == "h2"
    status, data = 0, bytearray()
    with sock:
        conn.send_headers(1, [(":method", "POST"), (":scheme", client.scheme), (":authority", client.authority),
                              (":path", path)])
        for c in chunks:
            conn.send_data(1, c)
        conn.send_headers(1, trailers, end_stream=True)
        sock.sendall(conn.data_to_send())
        for _ in range(1000):            # frames, not time: the socket timeout bounds each read
            received = sock.recv(65536)
            assert received, "the gateway closed the connection"
            events = conn.receive_data(received)
            for ev in events:
                if isinstance(ev, h2.events.ResponseReceived):
                    status = int(dict(ev.headers)[":status"])
                elif isinstance(ev, h2.events.DataReceived):
                    data += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamReset):
                    raise AssertionError(f"stream reset with {ev.error_code!r}")
            sock.sendall(conn.data_to_send())
            if any(isinstance(ev, h2.events.StreamEnded) for ev in events):
                return status, json.loads(data)
    raise AssertionError("the response never ended")


def test_request_trailers_end_the_body_and_are_not_forwarded_to_http1_backends(client: Client) -> None:
    """The body reaches the backend whole; the trailer fields do not (HTTP/1.1 backends get re-framed bodies)."""
    status, seen = post_with_trailers(client, "/pre/trailers", [b"a" * 100, b"b" * 50], [("x-checksum", "123")])
    assert status == 200, seen
    assert (seen["method"], seen["path"], seen["body_len"]) == ("POST", "/pre/trailers", 150)
    assert "x-checksum" not in seen["headers"]
