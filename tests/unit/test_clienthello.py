"""The ClientHello parser: real ClientHellos from the ssl module, every truncation of them, and fuzzed input
never raise and never claim more than is there."""

from __future__ import annotations

import random
import ssl

import pytest
from a3s_gateway.worker.proxy import clienthello


def real_hello(server_name: str | None, alpn: list[str] | None = None) -> bytes:
    ctx = ssl.create_default_context()
    if alpn:
        ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def test_sni_and_alpn_are_read() -> None:
    hello = clienthello.parse(real_hello("Example.COM", ["h2", "http/1.1"]))
    assert isinstance(hello, clienthello.Hello)
    assert hello.sni == "example.com" and hello.alpn == ["h2", "http/1.1"]


def test_no_sni() -> None:
    hello = clienthello.parse(real_hello(None))
    assert isinstance(hello, clienthello.Hello) and hello.sni == ""


def test_every_truncation_needs_more() -> None:
    data = real_hello("a.test")
    for n in range(len(data)):
        assert clienthello.parse(data[:n]) is clienthello.NEED_MORE, n


def test_hello_split_over_two_records() -> None:
    data = real_hello("split.test")
    body = data[5:]
    first, second = body[:40], body[40:]
    records = (b"\x16\x03\x01" + len(first).to_bytes(2, "big") + first
               + b"\x16\x03\x01" + len(second).to_bytes(2, "big") + second)
    hello = clienthello.parse(records)
    assert isinstance(hello, clienthello.Hello) and hello.sni == "split.test"


@pytest.mark.parametrize("data", [b"GET / HTTP/1.1\r\n", b"\x17\x03\x03\x00\x10", b"\x16\x02", b"\x16\x03\x01\x00\x00"])
def test_not_tls(data: bytes) -> None:
    assert clienthello.parse(data) is clienthello.NOT_TLS


def test_fuzz_never_raises() -> None:
    rng = random.Random(1234)
    base = real_hello("fuzz.test", ["h2"])
    for _ in range(20000):
        data = bytearray(base)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = data[: rng.randint(0, len(data))]
        result = clienthello.parse(bytes(data))
        assert result in (clienthello.NEED_MORE, clienthello.NOT_TLS) or isinstance(result, clienthello.Hello)
    for _ in range(5000):
        junk = b"\x16\x03" + rng.randbytes(rng.randint(0, 300))
        clienthello.parse(junk)
