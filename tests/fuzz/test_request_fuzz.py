"""Fuzzing the HTTP/1.1 request path of the real binary: mutated raw requests (from a GET, a Content-Length POST
and a chunked POST, pipelined or not) go through a raw socket; whatever the bytes, the gateway must answer with
well-formed responses and/or close the connection promptly, and its worker must never crash or log a traceback.

Short run (CI, the default): ``FUZZ_EXAMPLES`` examples (150). Long run, e.g. overnight:
``FUZZ_EXAMPLES=200000 pytest tests/fuzz -q -p no:randomly``. A failure prints the exact payload (hypothesis
shrinks it first); add it to ``tests/e2e/smuggling_cases.py`` once fixed.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import time
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))
from harness import Gateway  # noqa: E402
from recording_backend import RecordingBackend  # noqa: E402

SEEDS = [
    b"GET /a?b=c HTTP/1.1\r\nHost: a\r\nX-Y: z\r\n\r\n",
    b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: v\r\n\r\n",
    b"GET /who HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
]
# bytes that matter to HTTP framing, plus the non-ASCII "whitespace" Python would strip
INTERESTING = b"\r\n\t \x00\x0b\x0c\xa0\x85:;,-_+0x9aAfF\"\x7f\xff"
TOKENS = [b"\r\n", b"\n", b"\r", b"Transfer-Encoding: chunked\r\n", b"Content-Length: 3\r\n", b"Content-Length: 0\r\n",
          b"Host: b\r\n", b"Connection: close\r\n", b"Expect: 100-continue\r\n", b"0\r\n\r\n", b" ", b"HTTP/1.0",
          b"Upgrade: websocket\r\nConnection: Upgrade\r\n", b"\r\n\r\n", b"ffffffffffffffff\r\n"]
STATUS_LINE = re.compile(rb"HTTP/1\.1 [1-5][0-9][0-9] [^\r\n]*\r\n")
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[routers.who]
rule = "PathPrefix(`/who`)"
service = "whoami@internal"
[routers.all]
rule = "PathPrefix(`/`)"
service = "rec"
[services.rec.load_balancer]
servers = [{url = "%s"}]
[services.rec.load_balancer.passive_health]
max_failures = 0
"""


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    backend = RecordingBackend()
    g = Gateway(CONFIG % backend.url, tmp_path_factory.mktemp("fuzz"), workers=1)
    pids = g.worker_pids()
    yield g
    alive = g.worker_pids()
    g.stop()
    backend.stop()
    assert alive == pids, "a worker crashed during fuzzing"
    assert "Traceback" not in g.log_path.read_text(errors="replace")


@st.composite
def payloads(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    if draw(st.booleans()):
        data += draw(st.sampled_from(SEEDS))                       # pipelined
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.integers(0, 4))
        pos = draw(st.integers(0, len(data)))
        if op == 0:
            data[pos:pos] = bytes([draw(st.sampled_from(INTERESTING))])
        elif op == 1:
            data[pos:pos] = draw(st.sampled_from(TOKENS))
        elif op == 2:
            del data[pos:pos + draw(st.integers(1, 8))]
        elif op == 3 and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        else:
            data[pos:pos] = draw(st.binary(max_size=16))
    return bytes(data)


def _exchange(port: int, payload: bytes) -> bytes:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)              # EOF: every request is complete or never will be
        out = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        else:
            pytest.fail(f"the gateway neither answered nor closed: {payload!r}")
        return out
    finally:
        s.close()


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(payload=payloads())
def test_any_request_bytes_get_well_formed_answers_or_a_close(rig, payload: bytes) -> None:
    out = _exchange(rig.port, payload)
    if out:
        assert STATUS_LINE.match(out), (payload, out[:200])
        for m in re.finditer(rb"\r\n\r\nHTTP/", out):      # every later response starts with a status line too
            assert STATUS_LINE.match(out, m.start() + 4), (payload, out[:400])
