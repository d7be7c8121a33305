"""WebSocket over HTTP/2 (RFC 8441) through the real binary with 2 workers, in front of a ``websockets`` echo
server (HTTP/1.1): an ``h2`` client sees ``SETTINGS_ENABLE_CONNECT_PROTOCOL``, opens an extended CONNECT stream
and exchanges WebSocket frames as DATA; a 1 MiB message crosses the flow-control windows both ways; a refused
upgrade is relayed; other ``:protocol`` values get 501; an open WebSocket stream survives a reload; ordinary
requests keep flowing on the same connection."""

from __future__ import annotations

import json
import os
import socket
import struct
from collections.abc import Iterator

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from harness import Gateway
from proto_backends import WebSocketEcho

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


def frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (RFC 6455 §5.2), FIN set."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else struct.pack("!BH", 0xFE, n) if n < 65536
                                     else struct.pack("!BQ", 0xFF, n))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class H2WebSocket:
    """One h2 connection to the gateway, driven by hand: extended CONNECT streams carrying WebSocket frames."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())
        self.data: dict[int, bytearray] = {}
        self.heads: dict[int, dict[str, str]] = {}
        self.ended: set[int] = set()
        self.connect_protocol = False
        self.pump(lambda: self.connect_protocol)

    def pump(self, until) -> None:  # noqa: ANN001 — a condition over the state gathered so far
        for _ in range(10000):
            if until():
                return
            data = self.sock.recv(65536)
            assert data, "the gateway closed the connection"
            for event in self.conn.receive_data(data):
                if isinstance(event, h2.events.RemoteSettingsChanged):
                    setting = event.changed_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL)
                    self.connect_protocol = self.connect_protocol or (setting is not None and setting.new_value == 1)
                elif isinstance(event, h2.events.ResponseReceived):
                    self.heads[event.stream_id] = dict(event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    self.data.setdefault(event.stream_id, bytearray()).extend(event.data)
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    self.ended.add(event.stream_id)
            self.sock.sendall(self.conn.data_to_send())
        raise AssertionError("condition not reached")

    def open(self, path: str, protocol: str = "websocket") -> int:
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "CONNECT"), (":protocol", protocol), (":scheme", "http"),
                                     (":path", path), (":authority", "a"), ("sec-websocket-version", "13")])
        self.sock.sendall(self.conn.data_to_send())
        self.pump(lambda: sid in self.heads or sid in self.ended)
        return sid

    def send(self, sid: int, data: bytes) -> None:
        view = memoryview(data)
        while view:                            # within the gateway's windows, waiting for WINDOW_UPDATEs
            room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size, len(view))
            if room <= 0:
                self.pump(lambda: self.conn.local_flow_control_window(sid) > 0)
                continue
            self.conn.send_data(sid, bytes(view[:room]))
            self.sock.sendall(self.conn.data_to_send())
            view = view[room:]

    def message(self, sid: int) -> tuple[int, bytes]:
        """The next whole server frame of the stream (opcode, payload); server frames are unmasked."""
        def whole() -> bool:
            buf = self.data.get(sid, b"")
            return len(buf) >= 2 and len(buf) >= _frame_size(bytes(buf[:10]))

        self.pump(whole)
        buf = self.data[sid]
        size = _frame_size(bytes(buf[:10]))
        raw, self.data[sid] = bytes(buf[:size]), buf[size:]
        n = raw[1] & 0x7F
        start = 2 if n < 126 else 4 if n == 126 else 10
        return raw[0] & 0x0F, raw[start:]

    def close(self) -> None:
        self.sock.close()


def _frame_size(head: bytes) -> int:
    n = head[1] & 0x7F
    if n < 126:
        return 2 + n
    if n == 126:
        return 4 + struct.unpack("!H", head[2:4])[0] if len(head) >= 4 else 1 << 62
    return 10 + struct.unpack("!Q", head[2:10])[0] if len(head) >= 10 else 1 << 62


@pytest.fixture
def client(gw: Gateway) -> Iterator[H2WebSocket]:
    c = H2WebSocket(gw.port)
    yield c
    c.close()


def test_the_gateway_advertises_extended_connect_and_echoes_frames(client: H2WebSocket) -> None:
    assert client.connect_protocol
    sid = client.open("/echo")
    assert client.heads[sid][":status"] == "200" and "sec-websocket-accept" not in client.heads[sid]
    for i in range(5):
        client.send(sid, frame(0x1, f"hello {i}".encode()))
        assert client.message(sid) == (0x1, f"hello {i}".encode())
    client.send(sid, frame(0x2, bytes(range(256))))
    assert client.message(sid) == (0x2, bytes(range(256)))


def test_a_large_message_crosses_the_windows_both_ways(client: H2WebSocket) -> None:
    sid = client.open("/echo")
    big = os.urandom(1 << 20)
    client.send(sid, frame(0x2, big))
    assert client.message(sid) == (0x2, big)


def test_the_backend_sees_an_http1_upgrade_and_the_close_ends_the_stream(client: H2WebSocket) -> None:
    sid = client.open("/headers")
    opcode, payload = client.message(sid)
    headers = json.loads(payload)
    assert headers["upgrade"] == "websocket" and headers["sec-websocket-version"] == "13"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    client.send(sid, frame(0x8, struct.pack("!H", 1000)))      # close: the backend answers and closes
    assert client.message(sid)[0] == 0x8
    client.pump(lambda: sid in client.ended)


def test_a_refused_upgrade_is_relayed_and_other_protocols_get_501(client: H2WebSocket) -> None:
    sid = client.open("/reject")
    client.pump(lambda: sid in client.ended)
    assert client.heads[sid][":status"] == "403" and bytes(client.data[sid]) == b"denied"
    sid = client.open("/echo", protocol="connect-udp")
    client.pump(lambda: sid in client.ended)
    assert client.heads[sid][":status"] == "501"


def test_an_open_websocket_stream_survives_a_reload_beside_ordinary_requests(gw: Gateway,
                                                                             client: H2WebSocket) -> None:
    sid = client.open("/echo")
    client.send(sid, frame(0x1, b"before"))
    assert client.message(sid) == (0x1, b"before")
    before = gw.health()["generation"]
    new = CONFIG.replace("{backend}", gw.config_path.read_text().split('url = "')[1].split('"')[0])
    assert gw.reload(new.replace("/other", "/elsewhere")) == before + 1
    client.send(sid, frame(0x1, b"after"))
    assert client.message(sid) == (0x1, b"after")
    other = client.conn.get_next_available_stream_id()      # a plain request on the same connection
    client.conn.send_headers(other, [(":method", "GET"), (":scheme", "http"), (":path", "/elsewhere"),
                                     (":authority", "a")], end_stream=True)
    client.sock.sendall(client.conn.data_to_send())
    client.pump(lambda: other in client.ended)
    assert client.heads[other][":status"] == "200"
