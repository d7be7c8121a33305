"""The PROXY protocol through the real binary with 2 workers: raw sockets send v1 and v2 headers from a trusted
address (127.0.0.1) and from an untrusted one (127.0.0.2); the named client drives X-Forwarded-For, X-Real-IP
and ip-allow on an HTTP entrypoint, and a TCP entrypoint relays it; a header from an untrusted peer closes the
connection with a 400; services with ``proxy_protocol`` start every backend connection (HTTP and TCP) with a
header naming the client, seen by a backend that records the bytes it receives."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Iterator

import pytest
from harness import Gateway, free_port
from proto_backends import LoopThread

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
proxy_protocol = {trusted_ips = ["127.0.0.1/32"]}
[entrypoints.tcpin]
address = "127.0.0.1:{tcpin}"
protocol = "tcp"
proxy_protocol = {trusted_ips = ["127.0.0.1"]}
[admin]
address = "127.0.0.1:{admin}"
[routers.allowed]
rule = "PathPrefix(`/allowed`)"
service = "plain"
middlewares = ["only-ten"]
entrypoints = ["web"]
[middlewares.only-ten]
type = "ip-allow"
allowed_ips = ["10.9.0.0/16"]
[routers.send]
rule = "PathPrefix(`/send`)"
service = "send"
entrypoints = ["web"]
[routers.plain]
rule = "PathPrefix(`/`)"
service = "plain"
entrypoints = ["web"]
[routers.tcp]
rule = "HostSNI(`*`)"
service = "tcp"
entrypoints = ["tcpin"]
[services.plain.load_balancer]
servers = [{url = "http://127.0.0.1:REC"}]
[services.send.load_balancer]
servers = [{url = "http://127.0.0.1:REC"}]
proxy_protocol = {version = 1}
[services.tcp.load_balancer]
servers = [{url = "tcp://127.0.0.1:REC"}]
proxy_protocol = {version = 2}
"""


class Recorder(LoopThread):
    """Records the bytes of every connection; after the first blank line past the first 16 bytes (a v2
    signature starts with CRLF CRLF) it answers ``200`` with the bytes received so far (so a test sees what the
    backend saw, PROXY header included) and closes."""

    def __init__(self) -> None:
        super().__init__()
        self.conns: list[bytearray] = []
        self.port = free_port()
        recorder = self

        class Conn(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport, self.raw = transport, bytearray()
                recorder.conns.append(self.raw)

            def data_received(self, data: bytes) -> None:
                self.raw += data
                if self.raw.find(b"\r\n\r\n", 16) >= 0:
                    body = bytes(self.raw)
                    self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                                         % (len(body), body))
                    self.transport.close()

        async def start() -> None:
            self.server = await asyncio.get_running_loop().create_server(Conn, "127.0.0.1", self.port)

        self.run(start())


@pytest.fixture(scope="module")
def rec() -> Iterator[Recorder]:
    r = Recorder()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, rec: Recorder) -> Iterator[Gateway]:
    g = Gateway(CONFIG.replace("REC", str(rec.port)), tmp_path_factory.mktemp("gw"), tcpin=free_port())
    yield g
    g.stop()


def v1(src: str, sport: int = 4242) -> bytes:
    return b"PROXY TCP4 %s 127.0.0.1 %d 80\r\n" % (src.encode(), sport)


def v2(src: str, sport: int = 4242) -> bytes:
    addresses = socket.inet_aton(src) + socket.inet_aton("127.0.0.1") + struct.pack("!HH", sport, 80)
    return V2_SIG + b"\x21\x11" + struct.pack("!H", len(addresses)) + addresses


def exchange(port: int, data: bytes, source: str = "127.0.0.1") -> bytes:
    """Send ``data`` from ``source`` and read until the gateway closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as sock:
        sock.sendall(data)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        return out


def request(path: str) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" % path.encode()


@pytest.mark.parametrize("header", [v1, v2])
def test_a_trusted_peers_header_names_the_client_to_the_backend(gw: Gateway, header) -> None:  # noqa: ANN001
    out = exchange(gw.port, header("10.9.8.7") + request("/plain"))
    assert out.startswith(b"HTTP/1.1 200")
    seen = out.partition(b"\r\n\r\n")[2]
    assert b"X-Forwarded-For: 10.9.8.7\r\n" in seen and b"X-Real-IP: 10.9.8.7\r\n" in seen
    assert not seen.startswith(b"PROXY")          # this service is not sent a header


def test_the_named_client_is_what_ip_allow_sees(gw: Gateway) -> None:
    assert exchange(gw.port, v2("10.9.1.1") + request("/allowed")).startswith(b"HTTP/1.1 200")
    assert exchange(gw.port, v2("10.8.1.1") + request("/allowed")).startswith(b"HTTP/1.1 403")
    assert exchange(gw.port, request("/allowed")).startswith(b"HTTP/1.1 403")   # trusted peer, no header


def test_a_header_from_an_untrusted_peer_is_a_protocol_error(gw: Gateway) -> None:
    for header in (v1, v2):
        out = exchange(gw.port, header("10.9.8.7") + request("/plain"), source="127.0.0.2")
        assert out.startswith(b"HTTP/1.1 400") or out == b""
    out = exchange(gw.port, request("/plain"), source="127.0.0.2")       # without one, served as usual
    assert out.startswith(b"HTTP/1.1 200") and b"X-Forwarded-For: 127.0.0.2\r\n" in out


def test_a_malformed_header_from_a_trusted_peer_closes_the_connection(gw: Gateway) -> None:
    assert exchange(gw.port, b"PROXY TCP4 nonsense\r\n" + request("/plain")) == b""


def test_an_http_service_with_proxy_protocol_gets_a_v1_header_per_connection(gw: Gateway) -> None:
    out = exchange(gw.port, v2("10.1.2.3", 5555) + request("/send"))
    seen = out.partition(b"\r\n\r\n")[2]
    assert seen.startswith(b"PROXY TCP4 10.1.2.3 127.0.0.1 5555 %d\r\nGET /send HTTP/1.1\r\n" % gw.port)


def test_a_tcp_entrypoint_takes_the_client_from_the_header_and_sends_a_v2_one(gw: Gateway) -> None:
    port = gw.ports["tcpin"]
    out = exchange(port, v1("10.4.4.4", 7777) + b"hello\r\n\r\n")
    seen = out.partition(b"\r\n\r\n")[2]
    assert seen[:12] == V2_SIG and seen[12:14] == b"\x21\x11"
    length = struct.unpack("!H", seen[14:16])[0]
    src, dst, sport, dport = struct.unpack("!4s4sHH", seen[16:16 + 12])
    assert socket.inet_ntoa(src) == "10.4.4.4" and sport == 7777 and dport == port
    assert seen[16 + length:] == b"hello\r\n\r\n"
    # from an untrusted peer nothing is read: the bytes reach the backend as sent, after the gateway's header
    out = exchange(port, b"plain\r\n\r\n", source="127.0.0.2")
    seen = out.partition(b"\r\n\r\n")[2]
    assert socket.inet_ntoa(seen[16:20]) == "127.0.0.2" and seen.endswith(b"plain\r\n\r\n")
