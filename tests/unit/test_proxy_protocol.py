"""PROXY protocol headers (``worker/proxy_protocol.py``): what is parsed from v1 and v2 headers, what is refused,
what is built for backends, and the config checks of ``proxy_protocol`` keys."""

from __future__ import annotations

import pytest
from a3s_gateway.shared.config import ConfigError, GatewayConfig
from a3s_gateway.worker import proxy_protocol as pp


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize(("src", "dst"), [(("10.1.2.3", 555), ("127.0.0.1", 80)),
                                          (("2001:db8::1", 7), ("::1", 443)),
                                          (("10.1.2.3", 9), ("::1", 443))])      # mixed: both as IPv6
def test_a_header_built_for_a_backend_parses_back_to_its_client(version: int, src, dst) -> None:  # noqa: ANN001
    header = pp.header(version, src, dst)
    size, client = pp.parse(header + b"GET / HTTP/1.1\r\n")  # type: ignore[misc]
    assert size == len(header)
    assert client == src                       # an IPv4-mapped address comes back as the IPv4 one


def test_headers_that_name_no_client_and_bytes_that_are_no_header() -> None:
    assert pp.parse(b"PROXY UNKNOWN\r\nGET") == (15, None)
    assert pp.parse(pp.V2_SIGNATURE + b"\x20\x00\x00\x00rest") == (16, None)     # LOCAL
    assert pp.parse(b"GET / HTTP/1.1\r\n") == (0, None)
    assert pp.parse(b"PROX") is None and pp.parse(pp.V2_SIGNATURE[:5]) is None   # more bytes needed
    assert pp.parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2") is None                  # no CRLF yet
    assert pp.header(1, None, ("127.0.0.1", 80)) == b"PROXY UNKNOWN\r\n"


@pytest.mark.parametrize("data", [
    b"PROXY TCP4 nonsense\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
    b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 " + b"1" * 120,
    pp.V2_SIGNATURE + b"\x31\x11\x00\x0c" + bytes(12),                            # version 3
    pp.V2_SIGNATURE + b"\x21\x11\x00\x04" + bytes(4),                             # too short for AF_INET
])
def test_malformed_headers_are_refused(data: bytes) -> None:
    with pytest.raises(pp.HeaderError):
        pp.parse(data)


def test_proxy_protocol_is_only_sent_to_servers_whose_connections_carry_one_client() -> None:
    text = """
[entrypoints.web]
address = "127.0.0.1:8080"
proxy_protocol = {trusted_ips = []}
[services.s.load_balancer]
servers = [{url = "http://127.0.0.1:1"}, {url = "h2c://127.0.0.1:2"}]
proxy_protocol = {version = 3}
"""
    with pytest.raises(ConfigError) as excinfo:
        GatewayConfig.from_toml(text)
    problems = {(p.path, p.message) for p in excinfo.value.problems}
    paths = {path for path, _ in problems}
    assert "entrypoints.web.proxy_protocol.trusted_ips" in paths
    assert "services.s.load_balancer.proxy_protocol.version" in paths
    assert ("services.s.load_balancer.servers[1].url",
            "proxy_protocol is sent to http://, tcp://, unix:// and vsock:// servers only, not h2c:// (TLS and "
            "HTTP/2 connections are shared or encrypted before it)") in problems
