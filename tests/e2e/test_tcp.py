"""TCP entrypoints through the real binary: redis-server relayed and driven by redis-py, SNI passthrough to two
TLS backends by name (exact, wildcard, catch-all), TLS terminated at the gateway, half-close, the TCP filter,
balancing over TCP backends, and malformed ClientHellos."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator

import pytest
import redis
from certs import CA
from harness import Gateway, free_port, port_open, wait_until
from proto_backends import TLSEcho

CONFIG = """
[entrypoints.redis]
address = "127.0.0.1:{redis}"
protocol = "tcp"
[entrypoints.sni]
address = "127.0.0.1:{sni}"
protocol = "tcp"
[entrypoints.sni.tls]
cert_file = "{pki}/gw.test.pem"
key_file = "{pki}/gw.test-key.pem"
[entrypoints.guarded]
address = "127.0.0.1:{guarded}"
protocol = "tcp"
tcp_allowed_ips = ["10.0.0.0/8"]
[admin]
address = "127.0.0.1:{admin}"

[routers.redis]
rule = "HostSNI(`*`)"
service = "redis"
entrypoints = ["redis"]
[routers.alpha]
rule = "HostSNI(`alpha.test`)"
service = "alpha"
entrypoints = ["sni"]
tls = {passthrough = true}
[routers.beta]
rule = "HostSNI(`*.beta.test`)"
service = "beta"
entrypoints = ["sni"]
tls = {passthrough = true}
[routers.terminated]
rule = "HostSNI(`gw.test`)"
service = "plain-echo"
entrypoints = ["sni"]
tls = {}
[routers.plain]
rule = "HostSNI(`*`)"
service = "plain-echo"
entrypoints = ["sni"]
[routers.guarded]
rule = "HostSNI(`*`)"
service = "redis"
entrypoints = ["guarded"]

[services.redis.load_balancer]
servers = [{url = "tcp://127.0.0.1:{redis_port}"}]
[services.alpha.load_balancer]
servers = [{url = "tcp://127.0.0.1:{alpha_port}"}]
[services.beta.load_balancer]
servers = [{url = "tcp://127.0.0.1:{beta_port}"}]
[services.plain-echo.load_balancer]
servers = [{url = "tcp://127.0.0.1:{echo1}"}, {url = "tcp://127.0.0.1:{echo2}"}]
"""


def line_echo(name: str) -> tuple[socket.socket, int]:
    """A plain TCP echo that prefixes its name and answers EOF with its own EOF (threads, one per client)."""
    import threading

    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def client(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(name.encode() + b":" + data)
                conn.sendall(b"bye")
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass                                      # the client went away first

    def accept() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=client, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return srv, port


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed (.ci/install-deps installs it)")
    tmp = tmp_path_factory.mktemp("tcp")
    ca = CA(tmp / "pki")
    ca.issue("gw.test")
    alpha_pair, beta_pair = ca.issue("alpha.test"), ca.issue("x.beta.test", "*.beta.test")
    alpha = TLSEcho("alpha", str(alpha_pair.cert), str(alpha_pair.key))
    beta = TLSEcho("beta", str(beta_pair.cert), str(beta_pair.key))
    redis_port = free_port()
    rs = subprocess.Popen(["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
                          stdout=subprocess.DEVNULL, cwd=tmp)
    wait_until(lambda: port_open(redis_port), what="redis-server")
    (s1, e1), (s2, e2) = line_echo("e1"), line_echo("e2")
    config = CONFIG
    for k, v in {"pki": ca.folder, "redis_port": redis_port, "alpha_port": alpha.port, "beta_port": beta.port,
                 "echo1": e1, "echo2": e2}.items():
        config = config.replace("{" + k + "}", str(v))
    ports = {"redis": free_port(), "sni": free_port(), "guarded": free_port()}
    g = Gateway(config, tmp, **ports)
    yield {"gw": g, "ca": ca, "ports": ports}
    g.stop()
    rs.terminate()
    rs.wait(5)
    for x in (alpha, beta):
        x.stop()
    s1.close()
    s2.close()


def test_redis_through_the_gateway(env: dict) -> None:
    r = redis.Redis(host="127.0.0.1", port=env["ports"]["redis"], socket_timeout=5)
    r.set("k", b"v" * 100_000)
    assert r.get("k") == b"v" * 100_000
    pipe = r.pipeline()
    for _ in range(1000):
        pipe.incr("counter")
    assert pipe.execute()[-1] == 1000
    out = subprocess.run(["redis-cli", "-p", str(env["ports"]["redis"]), "PING"], capture_output=True, text=True,
                         timeout=5)
    assert out.stdout.strip() == "PONG"


def tls_line(env: dict, server_name: str) -> bytes:
    ctx = ssl.create_default_context(cafile=str(env["ca"].path))
    with socket.create_connection(("127.0.0.1", env["ports"]["sni"]), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as s:
            s.sendall(b"hello\n")
            return s.recv(100)


def test_sni_passthrough_routes_by_name_to_the_backend_that_terminates(env: dict) -> None:
    assert tls_line(env, "alpha.test") == b"alpha:hello\n"
    assert tls_line(env, "one.beta.test") == b"beta:hello\n"
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        tls_line(env, "unknown.test")               # no TLS router for it: closed


def test_tls_terminated_at_the_gateway_and_plaintext_relayed(env: dict) -> None:
    reply = tls_line(env, "gw.test")
    assert reply in (b"e1:hello\n", b"e2:hello\n")


def test_plain_tcp_on_the_same_entrypoint_with_half_close_and_balancing(env: dict) -> None:
    seen = set()
    for _ in range(4):
        with socket.create_connection(("127.0.0.1", env["ports"]["sni"]), timeout=5) as s:
            s.sendall(b"ping")
            s.shutdown(socket.SHUT_WR)                    # half-close: the reply still comes back
            data = b""
            while chunk := s.recv(100):
                data += chunk
            name, _, rest = data.partition(b":")
            assert rest == b"pingbye"
            seen.add(name)
    assert seen == {b"e1", b"e2"}


def test_tcp_allowed_ips_refuses_other_clients(env: dict) -> None:
    with socket.create_connection(("127.0.0.1", env["ports"]["guarded"]), timeout=5) as s:
        try:
            s.sendall(b"PING\r\n")
            assert s.recv(100) == b""
        except ConnectionResetError:
            pass                                          # closed with our bytes unread: a reset, as refused


@pytest.mark.parametrize("data", [
    b"\x16\x03\x01\x00\x05\x01\x00\x00\xff\xff",                  # length fields that overrun
    b"\x16\x03\x01\x40\x00" + os.urandom(100),                    # a record that never completes
    b"\x16\x03\x01\x00\x30" + os.urandom(0x30),                   # random handshake body
    b"\x16\x09\x09garbage",
])
def test_malformed_client_hello_closes_the_connection_not_the_worker(env: dict, data: bytes) -> None:
    gw = env["gw"]
    pids = sorted(gw.worker_pids())
    with socket.create_connection(("127.0.0.1", env["ports"]["sni"]), timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        try:
            while s.recv(100):
                pass
        except OSError:
            pass
    assert tls_line(env, "alpha.test") == b"alpha:hello\n"
    assert sorted(gw.worker_pids()) == pids
