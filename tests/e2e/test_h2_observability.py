"""HTTP/2 streams observed like HTTP/1.1 requests, through the real binary: JSON and Common Log Format lines
that say HTTP/2.0 (h2c prior knowledge and h2 by ALPN), server and client spans with the right ids, trace
context continued and injected upstream in every configured format (to HTTP/1.1 and gRPC backends), gRPC
calls traced with their grpc-status, a reset stream logged with status 0, and metrics counting streams."""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import h2.config
import h2.connection
import httpx
import pytest
from certs import CA
from harness import Backend, Gateway, free_port, one_service, wait_until
from obs_util import OtlpSink, json_lines, scrape, value

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[entrypoints.secure]
address = "127.0.0.1:{secure}"
[entrypoints.secure.tls]
cert_file = "PKI/h2.test.pem"
key_file = "PKI/h2.test-key.pem"
[admin]
address = "127.0.0.1:{admin}"
[routers.api]
rule = "PathPrefix(`/api`) || PathPrefix(`/delay`)"
service = "svc"
[routers.count]
rule = "PathPrefix(`/count`)"
service = "svc"
[routers.echo]
rule = "PathPrefix(`/echo.Echo/`)"
service = "grpc"
[services.svc.load_balancer]
servers = [{url = "BACKEND"}]
[services.grpc.load_balancer]
servers = [{url = "h2c://127.0.0.1:GRPC_PORT"}]
[access_log]
enabled = true
path = "LOG"
flush_interval = "20ms"
[tracing]
enabled = true
propagation = ["tracecontext", "b3", "b3multi"]
[tracing.otlp]
endpoint = "SINK"
flush_interval = "50ms"
"""

TID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TP_RE = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-0([01])")
SERVER, CLIENT = 2, 3


class GrpcEcho:
    """A gRPC server (h2c) with one raw-bytes method, ``/echo.Echo/Unary``, that records the metadata it got;
    a request of ``b"fail"`` is answered NOT_FOUND (a trailers-only response)."""

    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []

        def unary(request: bytes, ctx: grpc.ServicerContext) -> bytes:
            self.metadata.append(dict(ctx.invocation_metadata()))
            if request == b"fail":
                ctx.abort(grpc.StatusCode.NOT_FOUND, "nope")
            return request

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "echo.Echo", {"Unary": grpc.unary_unary_rpc_method_handler(unary)}),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> CA:
    ca = CA(tmp_path_factory.mktemp("pki"))
    ca.issue("h2.test")
    return ca


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, pki: CA) -> Iterator[dict[str, Any]]:
    backend = Backend("h2-obs")
    echo = GrpcEcho()
    sink = OtlpSink()
    tmp = tmp_path_factory.mktemp("gw")
    log = tmp / "access.log"
    config = (CONFIG.replace("PKI", str(pki.folder)).replace("BACKEND", backend.url)
              .replace("GRPC_PORT", str(echo.port)).replace("LOG", str(log)).replace("SINK", sink.url))
    g = Gateway(config, tmp, workers=2, secure=free_port())
    yield {"gw": g, "log": log, "sink": sink, "backend": backend, "echo": echo}
    g.stop()
    sink.close()
    echo.server.stop(0)
    backend.stop()


def h2c() -> httpx.Client:
    """An HTTP/2 client with prior knowledge (h2c): every request is an HTTP/2 stream."""
    return httpx.Client(http1=False, http2=True, timeout=10)


def _line(log: Path, pred: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    return wait_until(lambda: next((e for e in json_lines(log) if pred(e)), None), what=what)


def _trace(sink: OtlpSink, trace_id: str, n: int) -> dict[int, dict[str, Any]]:
    """The exported spans of one trace, by kind (server, client), once there are ``n``."""
    def found() -> list[dict[str, Any]] | None:
        spans = [s for s in sink.spans() if s["traceId"] == trace_id]
        return spans if len(spans) >= n else None

    return {s["kind"]: s for s in wait_until(found, what=f"{n} spans of trace {trace_id}")}


def _attrs(span: dict[str, Any]) -> dict[str, Any]:
    return {a["key"]: a["value"] for a in span["attributes"]}


def test_h2c_and_alpn_h2_streams_get_json_lines_that_say_http2(env: dict[str, Any], pki: CA) -> None:
    g, log = env["gw"], env["log"]
    with h2c() as c:
        r = c.post(g.url + "/api/items?x=1", content=b"hello", headers={"User-Agent": "h2-obs/1.0"})
    assert r.status_code == 200 and r.http_version == "HTTP/2"
    line = _line(log, lambda e: e["path"] == "/api/items", "the h2c line")
    assert line["protocol"] == "HTTP/2.0" and line["method"] == "POST" and line["query"] == "x=1"
    assert line["status"] == 200 and line["request_bytes"] == 5 and line["response_bytes"] == len(r.content)
    assert line["router"] == "api" and line["service"] == "svc" and line["backend"] == env["backend"].url
    assert line["entrypoint"] == "web" and line["worker"] in (0, 1) and line["client_ip"] == "127.0.0.1"
    assert line["user_agent"] == "h2-obs/1.0" and line["host"] == f"127.0.0.1:{g.port}"
    assert 0 < line["upstream_ms"] <= line["duration_ms"] < 5000 and line["reason"] is None
    assert re.fullmatch(r"[0-9a-f]{32}", line["trace_id"]) and re.fullmatch(r"[0-9a-f]{16}", line["span_id"])

    port = g.ports["secure"]
    with httpx.Client(http1=False, http2=True, verify=ssl.create_default_context(cafile=str(pki.path))) as c:
        r = c.get(f"https://127.0.0.1:{port}/api/tls", extensions={"sni_hostname": "h2.test"})
    assert r.status_code == 200 and r.http_version == "HTTP/2"
    line = _line(log, lambda e: e["path"] == "/api/tls", "the TLS h2 line")
    assert line["protocol"] == "HTTP/2.0" and line["entrypoint"] == "secure" and line["status"] == 200
    assert line["response_bytes"] == len(r.content)

    with h2c() as c:
        assert c.get(g.url + "/nowhere").status_code == 404
    line = _line(log, lambda e: e["path"] == "/nowhere", "the 404 line")
    assert line["protocol"] == "HTTP/2.0" and line["router"] is None and line["reason"] == "No route matched"
    assert line["upstream_ms"] is None and line["backend"] is None


def test_h2_stream_spans_have_the_right_parents_and_context_reaches_the_backend(env: dict[str, Any]) -> None:
    g, log = env["gw"], env["log"]
    with h2c() as c:
        seen = c.get(g.url + "/api/traced", headers={"traceparent": f"00-{TID}-{PARENT}-01",
                                                     "tracestate": "vendor=abc"}).json()["headers"]
    tid, client_span, sampled = TP_RE.fullmatch(seen["traceparent"][0]).groups()
    assert tid == TID and client_span != PARENT and sampled == "1" and seen["tracestate"] == ["vendor=abc"]
    b3 = seen["b3"][0].split("-")
    assert b3[:3] == [TID, client_span, "1"]
    assert seen["x-b3-traceid"] == [TID] and seen["x-b3-spanid"] == [client_span]
    assert seen["x-b3-parentspanid"] == [b3[3]] and seen["x-b3-sampled"] == ["1"]
    spans = _trace(env["sink"], TID, 2)
    server, client = spans[SERVER], spans[CLIENT]
    assert server["parentSpanId"] == PARENT and server["spanId"] == b3[3] and server["name"] == "GET api"
    assert client["spanId"] == client_span and client["parentSpanId"] == server["spanId"]
    assert _attrs(server)["http.response.status_code"] == {"intValue": "200"}
    assert int(server["startTimeUnixNano"]) <= int(client["startTimeUnixNano"]) <= int(client["endTimeUnixNano"])
    line = _line(log, lambda e: e["path"] == "/api/traced", "the traced line")
    assert line["trace_id"] == TID and line["span_id"] == server["spanId"]


def test_b3_from_an_h2_client_is_continued(env: dict[str, Any]) -> None:
    b3_tid, b3_sid = "80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1"
    with h2c() as c:
        seen = c.get(env["gw"].url + "/api/b3", headers={"b3": f"{b3_tid}-{b3_sid}-1"}).json()["headers"]
    tid, client_span, _ = TP_RE.fullmatch(seen["traceparent"][0]).groups()
    assert tid == b3_tid and client_span != b3_sid
    assert _trace(env["sink"], b3_tid, 2)[SERVER]["parentSpanId"] == b3_sid


def test_grpc_calls_are_traced_with_grpc_status_and_logged(env: dict[str, Any]) -> None:
    g, log, echo = env["gw"], env["log"], env["echo"]
    ok_tid, fail_tid, none_tid = "1" * 32, "2" * 32, "3" * 32
    with grpc.insecure_channel(f"127.0.0.1:{g.port}") as channel:
        assert channel.unary_unary("/echo.Echo/Unary")(
            b"hi", metadata=(("traceparent", f"00-{ok_tid}-{PARENT}-01"),), timeout=5) == b"hi"
        with pytest.raises(grpc.RpcError) as failed:
            channel.unary_unary("/echo.Echo/Unary")(
                b"fail", metadata=(("traceparent", f"00-{fail_tid}-{PARENT}-01"),), timeout=5)
        assert failed.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as unrouted:
            channel.unary_unary("/other.Service/Call")(
                b"x", metadata=(("traceparent", f"00-{none_tid}-{PARENT}-01"),), timeout=5)
        assert unrouted.value.code() == grpc.StatusCode.UNIMPLEMENTED
    seen = next(m for m in echo.metadata if ok_tid in m.get("traceparent", ""))
    _, client_span, _ = TP_RE.fullmatch(seen["traceparent"]).groups()
    ok = _trace(env["sink"], ok_tid, 2)
    assert ok[SERVER]["parentSpanId"] == PARENT and ok[SERVER]["name"] == "POST echo"
    assert ok[CLIENT]["spanId"] == client_span and ok[CLIENT]["parentSpanId"] == ok[SERVER]["spanId"]
    assert _attrs(ok[SERVER])["rpc.grpc.status_code"] == {"intValue": "0"}
    assert _attrs(ok[SERVER])["http.response.status_code"] == {"intValue": "200"}
    fail = _trace(env["sink"], fail_tid, 2)
    assert _attrs(fail[SERVER])["rpc.grpc.status_code"] == {"intValue": "5"}
    unrouted_spans = _trace(env["sink"], none_tid, 1)
    assert list(unrouted_spans) == [SERVER]
    assert _attrs(unrouted_spans[SERVER])["rpc.grpc.status_code"] == {"intValue": "12"}
    line = _line(log, lambda e: e["trace_id"] == ok_tid, "the gRPC line")
    assert line["protocol"] == "HTTP/2.0" and line["status"] == 200 and line["path"] == "/echo.Echo/Unary"
    assert line["router"] == "echo" and line["backend"] == f"h2c://127.0.0.1:{echo.port}"
    assert line["request_bytes"] == 7 and line["response_bytes"] == 7 and line["upstream_ms"] is not None
    line = _line(log, lambda e: e["trace_id"] == none_tid, "the unrouted gRPC line")
    assert line["router"] is None and line["status"] == 200


def test_a_stream_the_client_resets_is_logged_with_status_0(env: dict[str, Any]) -> None:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":path", "/delay/30?reset=1"), (":scheme", "http"),
                          (":authority", "localhost")], end_stream=True)
    conn.reset_stream(1)
    with socket.create_connection(("127.0.0.1", env["gw"].port), timeout=5) as s:
        s.sendall(conn.data_to_send())
        line = _line(env["log"], lambda e: e["query"] == "reset=1", "the reset stream's line")
    assert line["protocol"] == "HTTP/2.0" and line["status"] == 0 and line["router"] == "api"


def test_h2_streams_are_counted_in_metrics_with_their_bytes(env: dict[str, Any]) -> None:
    g = env["gw"]
    with h2c() as c:
        sizes = [len(c.post(g.url + f"/count/{i}", content=b"x" * 100).content) for i in range(5)]
        wait_until(lambda: value(scrape(g), "a3s_gateway_open_connections", protocol="http2") >= 1,
                   what="an open HTTP/2 connection")

    def counted() -> dict | None:
        s = scrape(g)
        return s if value(s, "a3s_gateway_router_requests_total", router="count", code_class="2xx") == 5 else None

    s = wait_until(counted, what="5 streams counted")
    assert value(s, "a3s_gateway_router_request_bytes_total", router="count") == 500
    assert value(s, "a3s_gateway_router_response_bytes_total", router="count") == sum(sizes)
    assert value(s, "a3s_gateway_router_request_duration_seconds_count", router="count") == 5


def test_common_log_format_says_http2(gateway: Callable[..., Gateway], backends: Callable[..., Backend],
                                      tmp_path: Path) -> None:
    log = tmp_path / "clf.log"
    g = gateway(one_service(backends().url, extra=f"""
[access_log]
enabled = true
path = "{log}"
format = "common"
flush_interval = "20ms"
"""), workers=2)
    with h2c() as c:
        r = c.get(g.url + "/clf?q=1")
    assert r.status_code == 200
    text = wait_until(lambda: log.exists() and log.read_text().strip(), what="a CLF line")
    clf = (r'127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET /clf\?q=1 HTTP/2\.0" 200 '
           + str(len(r.content)))
    assert re.fullmatch(clf, text), text
