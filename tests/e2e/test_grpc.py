"""gRPC through the real binary with grpcio client and server: all four RPC kinds over h2c to an h2c backend,
an https:// backend verified with the service's ``tls.ca_file``, trailers (status, message, custom metadata)
passed through, and the statuses the gateway makes itself."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from certs import CA
from harness import Gateway, free_port

PROTO = """
syntax = "proto3";
package echo;
message Msg { string text = 1; int32 n = 2; }
service Echo {
  rpc Unary (Msg) returns (Msg);
  rpc ServerStream (Msg) returns (stream Msg);
  rpc ClientStream (stream Msg) returns (Msg);
  rpc Bidi (stream Msg) returns (stream Msg);
  rpc Fail (Msg) returns (Msg);
}
"""

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[routers.echo]
rule = "PathPrefix(`/echo.Echo/`)"
service = "echo"
[routers.down]
rule = "Header(`x-target`, `down`)"
service = "down"
priority = 1000
[routers.slow]
rule = "Header(`x-target`, `slow`)"
service = "slow"
priority = 1000
[services.echo.load_balancer]
servers = [{url = "h2c://127.0.0.1:{grpc_port}"}]
[services.down.load_balancer]
servers = [{url = "h2c://127.0.0.1:{closed_port}"}]
[services.slow.load_balancer]
servers = [{url = "h2c://127.0.0.1:{silent_port}"}]
timeouts = {response_header = "300ms"}
[routers.tls]
rule = "Header(`x-target`, `tls`)"
service = "tls"
priority = 1000
[routers.tls-system-store]
rule = "Header(`x-target`, `tls-system-store`)"
service = "tls-system-store"
priority = 1000
[services.tls.load_balancer]
servers = [{url = "https://localhost:{tls_port}"}]
tls = {ca_file = "{ca}"}
[services.tls-system-store.load_balancer]
servers = [{url = "https://localhost:{tls_port}"}]
"""


@pytest.fixture(scope="module")
def pb(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    out = tmp_path_factory.mktemp("proto")
    (out / "echo.proto").write_text(PROTO)
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{out}", f"--python_out={out}",
                    f"--grpc_python_out={out}", str(out / "echo.proto")], check=True)
    sys.path.insert(0, str(out))
    import echo_pb2
    import echo_pb2_grpc
    return echo_pb2, echo_pb2_grpc


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, pb: tuple[Any, Any]) -> Iterator[dict]:
    echo_pb2, echo_pb2_grpc = pb

    class Echo(echo_pb2_grpc.EchoServicer):
        def Unary(self, req: Any, ctx: Any) -> Any:
            ctx.set_trailing_metadata((("x-served-by", "echo"),))
            return echo_pb2.Msg(text=req.text, n=req.n + 1)

        def ServerStream(self, req: Any, ctx: Any) -> Iterator[Any]:
            for i in range(req.n):
                yield echo_pb2.Msg(text=f"{req.text}{i}", n=i)

        def ClientStream(self, reqs: Any, ctx: Any) -> Any:
            items = list(reqs)
            return echo_pb2.Msg(text="".join(r.text for r in items), n=len(items))

        def Bidi(self, reqs: Any, ctx: Any) -> Iterator[Any]:
            for r in reqs:
                yield echo_pb2.Msg(text=r.text.upper(), n=r.n)

        def Fail(self, req: Any, ctx: Any) -> Any:
            ctx.abort(grpc.StatusCode.FAILED_PRECONDITION, "nope: " + req.text)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    echo_pb2_grpc.add_EchoServicer_to_server(Echo(), server)
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    ca = CA(tmp_path_factory.mktemp("pki"))
    pair = ca.issue("localhost")
    tls_port = server.add_secure_port(
        "127.0.0.1:0", grpc.ssl_server_credentials([(pair.key.read_bytes(), pair.cert.read_bytes())]))
    server.start()
    silent = socket.create_server(("127.0.0.1", 0))          # accepts TCP, never speaks HTTP/2
    config = (CONFIG.replace("{grpc_port}", str(grpc_port)).replace("{closed_port}", str(free_port()))
              .replace("{silent_port}", str(silent.getsockname()[1])).replace("{tls_port}", str(tls_port))
              .replace("{ca}", str(ca.path)))
    g = Gateway(config, tmp_path_factory.mktemp("gw"))
    channel = grpc.insecure_channel(f"127.0.0.1:{g.port}")
    yield {"gw": g, "stub": echo_pb2_grpc.EchoStub(channel), "pb": echo_pb2, "config": config}
    channel.close()
    g.stop()
    server.stop(0)
    silent.close()


def test_unary_with_trailers(env: dict) -> None:
    reply, call = env["stub"].Unary.with_call(env["pb"].Msg(text="hi", n=41), timeout=5)
    assert (reply.text, reply.n) == ("hi", 42)
    assert ("x-served-by", "echo") in call.trailing_metadata()
    assert call.code() == grpc.StatusCode.OK


def test_https_backend_is_verified_with_the_services_ca_file(env: dict) -> None:
    """The same TLS backend through two services: one trusting the test CA (``tls.ca_file``), one the system
    store, which cannot verify it. Each service's TLS settings make their own backend connection."""
    stub, msg = env["stub"], env["pb"].Msg(text="tls", n=1)
    assert stub.Unary(msg, metadata=(("x-target", "tls"),), timeout=5).n == 2
    with pytest.raises(grpc.RpcError) as info:
        stub.Unary(msg, metadata=(("x-target", "tls-system-store"),), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert stub.Unary(msg, metadata=(("x-target", "tls"),), timeout=5).n == 2


def test_server_streaming(env: dict) -> None:
    replies = list(env["stub"].ServerStream(env["pb"].Msg(text="s", n=100), timeout=5))
    assert [r.text for r in replies] == [f"s{i}" for i in range(100)]


def test_client_streaming(env: dict) -> None:
    reply = env["stub"].ClientStream(iter([env["pb"].Msg(text=c) for c in "abcdef" * 100]), timeout=5)
    assert reply.n == 600 and reply.text == "abcdef" * 100


def test_bidi_streaming(env: dict) -> None:
    replies = list(env["stub"].Bidi(iter([env["pb"].Msg(text=f"m{i}", n=i) for i in range(50)]), timeout=5))
    assert [r.text for r in replies] == [f"M{i}" for i in range(50)]


def test_backend_status_and_message_pass_through(env: dict) -> None:
    with pytest.raises(grpc.RpcError) as info:
        env["stub"].Fail(env["pb"].Msg(text="x"), timeout=5)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION and info.value.details() == "nope: x"


def test_no_route_is_unimplemented(env: dict) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{env['gw'].port}")
    method = channel.unary_unary("/other.Service/Call", request_serializer=lambda m: m,
                                 response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as info:
        method(b"", timeout=5)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    channel.close()


@pytest.mark.parametrize("target,code", [("down", grpc.StatusCode.UNAVAILABLE),
                                         ("slow", grpc.StatusCode.DEADLINE_EXCEEDED)])
def test_gateway_failures_are_grpc_statuses(env: dict, target: str, code: grpc.StatusCode) -> None:
    with pytest.raises(grpc.RpcError) as info:
        env["stub"].Unary(env["pb"].Msg(text="x"), metadata=(("x-target", target),), timeout=5)
    assert info.value.code() == code


def test_middleware_refusals_are_grpc_statuses(tmp_path: Path, env: dict) -> None:
    config = env["config"].replace('service = "echo"', 'service = "echo"\nmiddlewares = ["auth", "limit"]')
    config += ('[middlewares.auth]\ntype = "basic-auth"\nusername = "u"\npassword = "p"\n'
               '[middlewares.limit]\ntype = "rate-limit"\nrate = 1\nburst = 1\n')
    g = Gateway(config, tmp_path)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{g.port}")
        stub = type(env["stub"])(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Unary(env["pb"].Msg(text="x"), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        auth = (("authorization", "Basic dTpw"),)
        codes = []
        for _ in range(5):
            try:
                stub.Unary(env["pb"].Msg(text="x"), metadata=auth, timeout=5)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as e:
                codes.append(e.code())
        assert grpc.StatusCode.OK in codes and grpc.StatusCode.RESOURCE_EXHAUSTED in codes
        channel.close()
    finally:
        g.stop()
