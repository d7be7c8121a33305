"""Backends over unix sockets and vsock, through the real binary with two workers: HTTP/1.1 (pooled), HTTP/2
(``unix+h2c://``, Hypercorn), WebSocket and a TCP service over unix sockets, a health check taking a unix backend
out when its socket is gone, and vsock: this machine's kernel has no vsock loopback transport, so vsock is tested
for validation and the connect-failure path (CID 3 has no transport here and fails at once, nothing is sent)."""

from __future__ import annotations

import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from harness import BINARY, free_port, wait_until
from proto_backends import HypercornH2, UnixApp, UnixEcho
from websockets.sync.client import connect

HTTP = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[routers.r]
rule = "PathPrefix(`/`)"
service = "svc"
[services.svc.load_balancer]
servers = [SERVERS]
"""

HEALTH = """
[services.svc.load_balancer.health_check]
path = "/health"
interval = "200ms"
timeout = "500ms"
unhealthy_threshold = 2
"""


@pytest.fixture
def sockets() -> Iterator[Path]:
    """A short directory for socket files (a socket path has at most 107 bytes; pytest's tmp_path can be long)."""
    with tempfile.TemporaryDirectory(prefix="gw-", dir="/tmp") as d:
        yield Path(d)


@pytest.fixture
def started() -> Iterator[list]:
    """Backends to stop after the test."""
    out: list = []
    yield out
    for backend in out:
        backend.stop()


def _servers(*urls: str) -> str:
    return ", ".join(f'{{url = "{u}"}}' for u in urls)


def test_http_over_a_unix_socket_reuses_pooled_connections(gateway, sockets, started):
    app = UnixApp(str(sockets / "a.sock"), "a")
    started.append(app)
    g = gateway(HTTP.replace("SERVERS", _servers(app.url)), workers=2)
    with httpx.Client() as client:
        answers = [client.get(g.url + f"/item/{i}", headers={"Host": "shop.test"}) for i in range(20)]
    assert [r.status_code for r in answers] == [200] * 20
    assert answers[7].json() == {"name": "a", "path": "/item/7", "host": "shop.test"}
    assert len(app.connections) == 1          # one client connection, one worker, one pooled backend connection


def test_unix_backend_gets_host_localhost_without_pass_host_header(gateway, sockets, started):
    app = UnixApp(str(sockets / "a.sock"), "a")
    started.append(app)
    config = HTTP.replace("SERVERS", _servers(app.url)) + "pass_host_header = false\n"
    g = gateway(config, workers=2)
    assert httpx.get(g.url + "/x", headers={"Host": "shop.test"}).json()["host"] == "localhost"


def test_http2_over_a_unix_socket_with_unix_h2c(gateway, sockets, started):
    h2 = HypercornH2(unix=str(sockets / "h2.sock"))
    started.append(h2)
    g = gateway(HTTP.replace("SERVERS", _servers(h2.url)), workers=2)
    r = httpx.post(g.url + "/info", content=b"hello")
    assert r.status_code == 200, r.text
    info = r.json()
    assert (info["http_version"], info["path"], info["body_len"]) == ("2", "/info", 5)


def test_websocket_over_a_unix_socket(gateway, sockets, started):
    app = UnixApp(str(sockets / "ws.sock"), "ws")
    started.append(app)
    g = gateway(HTTP.replace("SERVERS", _servers(app.url)), workers=2)
    with connect(g.url.replace("http://", "ws://") + "/ws") as ws:
        ws.send("ping")
        assert ws.recv(timeout=5) == "ws: ping"
        ws.send("again")
        assert ws.recv(timeout=5) == "ws: again"


def _tcp_config(port: int, url: str) -> str:
    return f"""
[entrypoints.tcp]
address = "127.0.0.1:{port}"
protocol = "tcp"
[admin]
address = "127.0.0.1:{{admin}}"
[routers.t]
rule = "HostSNI(`*`)"
service = "echo"
entrypoints = ["tcp"]
[services.echo.load_balancer]
servers = [{{url = "{url}"}}]
"""


def test_tcp_service_relays_to_a_unix_socket(gateway, sockets, started):
    echo = UnixEcho(str(sockets / "echo.sock"), "echo")
    started.append(echo)
    port = free_port()
    gateway(_tcp_config(port, echo.url), workers=2)
    for _ in range(3):                        # fresh connections, so both workers relay some
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"hello")
            got = b""
            while len(got) < len(b"echo:hello"):
                chunk = s.recv(100)
                assert chunk, got
                got += chunk
            assert got == b"echo:hello"


def test_tcp_service_closes_the_client_when_its_vsock_backend_cannot_be_reached(gateway):
    port = free_port()
    g = gateway(_tcp_config(port, "vsock://3:5000"), workers=2)
    pids = g.worker_pids()
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"hello")
            try:
                got = s.recv(100)
            except ConnectionResetError:       # closed with the client's bytes unread: a reset
                got = b""
            assert got == b""                  # nothing relayed
    assert g.worker_pids() == pids


def test_health_check_takes_out_a_unix_backend_whose_socket_is_gone(gateway, sockets, started):
    a, b = UnixApp(str(sockets / "a.sock"), "a"), UnixApp(str(sockets / "b.sock"), "b")
    started.append(a)
    g = gateway(HTTP.replace("SERVERS", _servers(a.url, b.url)) + HEALTH, workers=2)
    key = f"svc|{b.url}"
    wait_until(lambda: g.health()["control"]["health_checks"][key]["successes"] > 0, 5, what="b probed")
    b.stop()                                   # the socket file is removed
    wait_until(lambda: not g.health()["control"]["health_checks"][key]["healthy"], 5, what="b marked down")
    state = g.health()["control"]["health_checks"][key]
    assert f"unix socket {sockets / 'b.sock'}: No such file or directory" in state["last_error"]
    names = {httpx.get(g.url + "/x", headers={"Connection": "close"}).json()["name"] for _ in range(20)}
    assert names == {"a"}


def test_vsock_backend_that_cannot_be_reached_answers_502_naming_it(gateway):
    passive_health_off = "[services.svc.load_balancer.passive_health]\nmax_failures = 0\n"
    g = gateway(HTTP.replace("SERVERS", _servers("vsock://3:5000")) + passive_health_off, workers=2)
    pids = g.worker_pids()
    for _ in range(6):                         # fresh connections: every worker answers, none crashes
        r = httpx.get(g.url + "/x", headers={"Connection": "close"})
        assert r.status_code == 502
        assert r.json()["error"] == ("Bad gateway: cannot connect to backend: vsock CID 3 port 5000: No such device "
                                     "(no vsock transport reaches this CID)")
    assert g.worker_pids() == pids


def test_health_check_takes_out_an_unreachable_vsock_backend(gateway):
    g = gateway(HTTP.replace("SERVERS", _servers("vsock+h2c://3:5000")) + HEALTH, workers=2)
    key = "svc|vsock+h2c://3:5000"
    wait_until(lambda: not g.health()["control"]["health_checks"][key]["healthy"], 5, what="vsock marked down")
    assert "vsock CID 3 port 5000: No such device" in g.health()["control"]["health_checks"][key]["last_error"]
    assert httpx.get(g.url + "/x").status_code == 503


def test_unix_backend_without_its_socket_answers_502_naming_the_path(gateway, sockets):
    missing = sockets / "missing.sock"
    g = gateway(HTTP.replace("SERVERS", _servers(f"unix+h2c://{missing}")), workers=2)
    r = httpx.get(g.url + "/x")
    assert r.status_code == 502
    assert r.json()["error"] == (f"Bad gateway: cannot connect to backend: unix socket {missing}: "
                                 "No such file or directory")


@pytest.mark.parametrize(("url", "message"), [
    ("unix://host/run/a.sock", "needs an absolute socket path and no host: unix:///path/to.sock (three slashes)"),
    ("unix:///" + "d" * 120, "socket path longer than 107 bytes, the kernel's limit"),
    ("vsock://3", "needs a CID and a port: vsock://CID:PORT"),
    ("vsock+h2c://guest:5000", "the CID must be an integer from 0 to 4294967294, got 'guest'"),
    ("vsock://3:4294967295", "the port must be an integer from 0 to 4294967294, got '4294967295'"),
    ("vsock://3:5000?x=1", "must not have a query, a fragment or a user"),
])
def test_bad_unix_and_vsock_urls_are_reported_with_their_key_path(tmp_path, url, message):
    config = tmp_path / "gateway.toml"
    config.write_text(HTTP.replace("SERVERS", _servers("http://127.0.0.1:1", url)).replace("{web}", "1")
                      .replace("{admin}", "2"))
    r = subprocess.run([*BINARY, "validate", "--config", str(config)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert f"services.svc.load_balancer.servers[1].url: URL '{url}'" in r.stderr
    assert message in r.stderr


def test_udp_router_to_a_unix_server_is_a_config_error(tmp_path):
    config = tmp_path / "gateway.toml"
    config.write_text("""
[entrypoints.dns]
address = "127.0.0.1:1053"
protocol = "udp"
[routers.d]
rule = "HostSNI(`*`)"
service = "resolver"
entrypoints = ["dns"]
[services.resolver.load_balancer]
servers = [{url = "udp://127.0.0.1:53"}, {url = "unix:///run/resolver.sock"}]
""")
    r = subprocess.run([*BINARY, "validate", "--config", str(config)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert ("services.resolver.load_balancer.servers[1].url: router 'd' relays UDP to this service, and unix:// "
            "servers take streams only") in r.stderr
