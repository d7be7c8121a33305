"""The smuggling corpus (``smuggling_cases.py``) against the real binary: a raw-socket client sends exact bytes,
a recording backend (``recording_backend.py``) proves what, if anything, was forwarded.

For every request case: the statuses the client reads, whether the connection is closed (or, when it must stay
open, that a follow-up request on it still gets the backend's answer, so the two sides are still in sync),
the exact complete requests the backend parsed with h11, and bytes that must or must not have been forwarded.
For every response case: the client's status and body, and that a backend connection that sent a bad response
is closed by the gateway and never reused.
"""

from __future__ import annotations

import pytest
from harness import Gateway, wait_until
from recording_backend import RawClient, RecordingBackend
from smuggling_cases import REQUEST_CASES, RESPONSE_CASES, Case

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[routers.all]
rule = "PathPrefix(`/`)"
service = "rec"
[services.rec.load_balancer]
servers = [{url = "%s"}]
[services.rec.load_balancer.passive_health]
max_failures = 0
"""

PROBE = b"GET /probe HTTP/1.1\r\nHost: a\r\n\r\n"
MARKER = b"GET /__marker HTTP/1.1\r\nHost: a\r\n\r\n"


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    backend = RecordingBackend()
    g = Gateway(CONFIG % backend.url, tmp_path_factory.mktemp("smuggling"), workers=1)
    yield g, backend
    g.stop()
    backend.stop()
    assert "Traceback" not in g.log_path.read_text(errors="replace")


def _marker(g: Gateway, backend: RecordingBackend) -> None:
    """A request on a fresh connection, waited for at the backend: whatever the case made the gateway forward
    was written before it (one worker, one event loop)."""
    c = RawClient(g.port)
    c.send(MARKER)
    r = c.read_response()
    c.close()
    assert r is not None and r[0] == 200
    wait_until(lambda: any(t == "/__marker" for _m, t, _h, _b in backend.requests()), what="marker at backend")


@pytest.mark.parametrize("case", REQUEST_CASES, ids=lambda c: c.name)
def test_request_framing(rig, case: Case) -> None:
    g, backend = rig
    backend.reset()
    c = RawClient(g.port)
    for part in case.payload if isinstance(case.payload, tuple) else (case.payload,):
        c.send(part)
    got = []
    for _ in case.statuses:
        r = c.read_response()
        if r is None:
            break
        got.append(r[0])
    if not (case.reset_ok and not got and c.reset):
        assert tuple(got) == case.statuses, case.why
    if case.closed:
        assert c.closed(), "the gateway must close the connection"
    else:
        c.send(PROBE)
        r = c.read_response()
        assert r is not None and (r[0], r[2]) == (200, b"ok"), "the connection must stay usable and in sync"
    c.close()

    _marker(g, backend)
    seen = [(m, t, b) for m, t, _h, b in backend.requests() if t != "/__marker"]
    raw = backend.raw()
    if case.backend is None:
        assert seen == [] and raw.count(b"\r\n\r\n") == 1 and raw.startswith(b"GET /__marker "), raw[:300]
    else:
        assert seen == list(case.backend) + ([] if case.closed else [("GET", "/probe", b"")])
        if case.backend == []:       # a head may have gone out; that upstream connection must not be reused
            partial = [conn for conn in backend.conns if conn.raw and not conn.requests]
            wait_until(lambda: all(conn.closed for conn in partial), what="partial upstream request closed")
    for needle in case.forwarded_has:
        assert needle in raw
    for needle in case.forwarded_lacks:
        assert needle not in raw


@pytest.mark.parametrize("name,raw,status,body", RESPONSE_CASES, ids=[c[0] for c in RESPONSE_CASES])
def test_response_framing(rig, name: str, raw: bytes, status: int | None, body: bytes | None) -> None:
    g, backend = rig
    target = f"/resp/{name}"
    backend.script[target] = raw
    backend.reset()
    c = RawClient(g.port)
    c.send(f"GET {target} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    r = c.read_response()
    if status is None:
        assert r is None and c.closed(), "a response broken after its head must end the client connection"
    else:
        assert r is not None and r[0] == status
        if body is not None:
            assert r[2] == body
        c.send(PROBE)
        again = c.read_response()
        assert again is not None and (again[0], again[2]) == (200, b"ok")
    c.close()
    served = [conn for conn in backend.conns if any(t == target for _m, t, _h, _b in conn.requests)]
    assert len(served) == 1
    if status != 200:
        wait_until(lambda: served[0].closed, what="bad upstream connection closed")
        assert not served[0].reused_after_script, "a connection that sent a bad response was reused"
