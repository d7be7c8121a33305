"""TCP and UDP relays are counted like HTTP requests: connections (relayed or failed), bytes each way and
durations per router, service and backend, in the metrics and in ``a3s-gateway status``."""

from __future__ import annotations

import socket
import socketserver
import subprocess
import threading
from collections.abc import Iterator

import pytest
from harness import BINARY, Gateway, free_port, wait_until
from obs_util import scrape, value
from proto_backends import UDPEcho

CONFIG = """
[entrypoints.tcp]
address = "127.0.0.1:{tcp}"
protocol = "tcp"
[entrypoints.dead]
address = "127.0.0.1:{dead}"
protocol = "tcp"
[entrypoints.udp]
address = "127.0.0.1:{udp}"
protocol = "udp"
udp = {idle_timeout = "1s"}
[admin]
address = "127.0.0.1:{admin}"
[routers.tcp-in]
rule = "HostSNI(`*`)"
service = "tcp-echo"
entrypoints = ["tcp"]
[routers.dead-in]
rule = "HostSNI(`*`)"
service = "nobody"
entrypoints = ["dead"]
[routers.udp-in]
rule = "HostSNI(`*`)"
service = "udp-echo"
entrypoints = ["udp"]
[services.tcp-echo.load_balancer]
servers = [{url = "tcp://127.0.0.1:%(tcp_echo)d"}]
[services.nobody.load_balancer]
servers = [{url = "tcp://127.0.0.1:%(nobody)d"}]
[services.udp-echo.load_balancer]
servers = [{url = "udp://127.0.0.1:%(udp_echo)d"}]
"""


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tcp_echo = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    tcp_echo.daemon_threads = True
    threading.Thread(target=tcp_echo.serve_forever, daemon=True).start()
    udp_echo = UDPEcho("u")
    ports = {"tcp": free_port(), "dead": free_port(), "udp": free_port()}
    config = CONFIG % {"tcp_echo": tcp_echo.server_address[1], "nobody": free_port(), "udp_echo": udp_echo.port}
    g = Gateway(config, tmp_path_factory.mktemp("l4"), workers=2, **ports)
    yield {"gw": g, **ports, "tcp_backend": f"tcp://127.0.0.1:{tcp_echo.server_address[1]}"}
    g.stop()
    udp_echo.stop()
    tcp_echo.shutdown()
    tcp_echo.server_close()


def test_tcp_relay_counts_connection_bytes_and_duration_per_router_service_and_backend(env: dict) -> None:
    g = env["gw"]
    with socket.create_connection(("127.0.0.1", env["tcp"]), timeout=5) as c:
        c.sendall(b"hello")
        assert c.recv(100) == b"hello"
        threading.Event().wait(0.05)      # the connection's duration is what is measured
        c.sendall(b"again!")
        assert c.recv(100) == b"again!"
    name = "a3s_gateway_router_connections_total"
    samples = wait_until(lambda: (s := scrape(g)) and value(s, name, router="tcp-in", outcome="relayed") == 1 and s,
                         10, what="the TCP connection counted")
    assert value(samples, "a3s_gateway_router_request_bytes_total", router="tcp-in") == 11
    assert value(samples, "a3s_gateway_router_response_bytes_total", router="tcp-in") == 11
    assert value(samples, "a3s_gateway_service_connections_total", service="tcp-echo", outcome="relayed") == 1
    assert value(samples, "a3s_gateway_backend_connections_total", backend=env["tcp_backend"],
                 outcome="relayed") == 1
    assert value(samples, "a3s_gateway_backend_request_bytes_total", backend=env["tcp_backend"]) == 11
    assert 0.05 <= value(samples, "a3s_gateway_router_connection_duration_seconds_total", router="tcp-in") < 5


def test_tcp_connection_to_an_unreachable_backend_counts_as_failed(env: dict) -> None:
    g = env["gw"]
    with socket.create_connection(("127.0.0.1", env["dead"]), timeout=5) as c:
        assert c.recv(100) == b""       # closed by the gateway: nothing to relay to
    wait_until(lambda: value(scrape(g), "a3s_gateway_router_connections_total", router="dead-in",
                             outcome="failed") == 1, 10, what="the failed connection counted")
    assert value(scrape(g), "a3s_gateway_router_connections_total", router="dead-in", outcome="relayed") == 0


def test_udp_session_counts_when_it_ends_with_its_bytes(env: dict) -> None:
    g = env["gw"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
        c.settimeout(5)
        c.sendto(b"ping", ("127.0.0.1", env["udp"]))
        assert c.recvfrom(100)[0] == b"u:ping"
    # the session ends after its idle timeout (1 s); only then is it counted
    samples = wait_until(lambda: (s := scrape(g)) and value(s, "a3s_gateway_router_connections_total",
                                                            router="udp-in", outcome="relayed") == 1 and s,
                         10, what="the UDP session counted")
    assert value(samples, "a3s_gateway_service_request_bytes_total", service="udp-echo") == 4
    assert value(samples, "a3s_gateway_service_response_bytes_total", service="udp-echo") == 6


def test_status_shows_tcp_connections_and_bytes_of_the_backend(env: dict) -> None:
    g = env["gw"]
    with socket.create_connection(("127.0.0.1", env["tcp"]), timeout=5) as c:
        c.sendall(b"x")
        assert c.recv(10) == b"x"

    def backend_line() -> str | None:
        out = subprocess.run([*BINARY, "status", "--pid", str(g.proc.pid)], capture_output=True, text=True,
                             timeout=30, check=True).stdout
        line = next(ln for ln in out.splitlines() if env["tcp_backend"] in ln)
        return line if line.split()[4] != "0/0" else None

    cols = wait_until(backend_line, 10, what="status counting the connection").split()
    relayed, failed = map(int, cols[4].split("/"))
    assert cols[3] == "0" and relayed >= 1 and failed == 0      # no HTTP requests; TCP connections
    assert int(cols[5]) >= 1 and int(cols[6]) >= 1                # bytes in, bytes out
