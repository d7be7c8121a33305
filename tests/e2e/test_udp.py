"""UDP entrypoints through the real binary: echo for several clients at once, replies to the right client,
sessions balanced over backends and pinned per client, idle eviction, and the session cap."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from harness import Gateway, free_port, wait_until
from proto_backends import UDPEcho

CONFIG = """
[entrypoints.dns]
address = "127.0.0.1:{dns}"
protocol = "udp"
udp = {idle_timeout = "1s", max_sessions = 50}
[admin]
address = "127.0.0.1:{admin}"
[routers.dns]
rule = "HostSNI(`*`)"
service = "echo"
entrypoints = ["dns"]
[services.echo.load_balancer]
servers = [{url = "udp://127.0.0.1:{a}"}, {url = "udp://127.0.0.1:{b}"}]
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    a, b = UDPEcho("a"), UDPEcho("b")
    config = CONFIG.replace("{a}", str(a.port)).replace("{b}", str(b.port))
    port = free_port()
    g = Gateway(config, tmp_path_factory.mktemp("udp"), workers=2, dns=port)
    yield {"gw": g, "port": port, "a": a, "b": b}
    g.stop()
    a.stop()
    b.stop()


def client() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(3)
    return s


def ask(s: socket.socket, port: int, data: bytes) -> bytes:
    s.sendto(data, ("127.0.0.1", port))
    return s.recvfrom(65536)[0]


def test_several_clients_get_their_own_replies_and_keep_their_backend(env: dict) -> None:
    clients = [client() for _ in range(12)]
    try:
        first = {}
        for round_ in range(3):
            for i, c in enumerate(clients):
                name, _, echoed = ask(c, env["port"], f"c{i}r{round_}".encode()).partition(b":")
                assert echoed == f"c{i}r{round_}".encode()
                assert first.setdefault(i, name) == name           # a session keeps its backend
        assert set(first.values()) == {b"a", b"b"}                 # sessions are balanced
    finally:
        for c in clients:
            c.close()


def test_large_datagram_round_trip(env: dict) -> None:
    with client() as c:
        payload = bytes(range(256)) * 200
        assert ask(c, env["port"], payload).partition(b":")[2] == payload


def test_idle_session_is_evicted_and_a_new_one_opens(env: dict) -> None:
    with client() as c:
        ask(c, env["port"], b"x")
        peers = env["a"].state["peers"] | env["b"].state["peers"]
        count = len(peers)
        # the session's upstream socket closes after 1 s idle; the next datagram opens a new one (new port)
        wait_until(lambda: ask(c, env["port"], b"y") and len(env["a"].state["peers"] | env["b"].state["peers"]) > count,
                   timeout=10, interval=1.5, what="session evicted and reopened")


def test_session_cap_drops_new_clients(env: dict) -> None:
    clients = [client() for _ in range(120)]
    try:
        for c in clients:                                          # all within well under the 1 s idle timeout
            c.sendto(b"cap", ("127.0.0.1", env["port"]))
        answered = 0
        for c in clients:
            c.settimeout(0.2)
            try:
                c.recvfrom(100)
                answered += 1
            except TimeoutError:
                pass
        assert 50 <= answered <= 100                               # 50 sessions per worker, 2 workers
    finally:
        for c in clients:
            c.close()
