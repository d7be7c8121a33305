"""Unit tests of the observations table (metrics histograms on the plane), the Prometheus collector, tracing
header parsing and access log formatting."""

from __future__ import annotations

import shutil
import subprocess
import types

import pytest
from a3s_gateway.master import metrics
from a3s_gateway.shared.plane import Plane, PlaneError, PlaneLayout
from a3s_gateway.shared.plane.observations import BOUNDS, METHOD_INDEX, NB, entrypoint_indices
from a3s_gateway.worker.exchange import Exchange
from a3s_gateway.worker.observability import tracing
from a3s_gateway.worker.observability.access_log import Clock
from a3s_gateway.worker.responses import Answer

LAYOUT = PlaneLayout(max_workers=4, max_backends=8, max_routers=8, max_services=8, ratelimit_entries=64,
                     max_breakers=4, sticky_entries=64, max_limiters=4)


@pytest.fixture
def plane():
    p = Plane.create(LAYOUT, tag="obs")
    yield p
    p.close()
    p.unlink()


def _worker(master: Plane, slot: int) -> Plane:
    master.set_worker(slot, 10_000 + slot)
    return Plane.attach(master.name, worker_slot=slot)


def test_observe_fills_buckets_sum_and_request_classes(plane):
    w = _worker(plane, 0)
    try:
        get = METHOD_INDEX[b"GET"]
        w.observe(2, 3, 1, get, 200, 0.0004, False, 0)        # first bucket
        w.observe(2, 3, 1, get, 200, 0.003, False, 0)         # le 0.005
        w.observe(2, -1, 1, get, 429, 20.0, True, 2)          # +Inf, local 429, 2 retries
        w.observe(-1, -1, 0, len(METHOD_INDEX), 0, 0.001, False, 0)   # no route, no response, OTHER
        obs = plane.observation_totals()
    finally:
        w.close()
    buckets, total = obs["router_durations"][2]
    assert len(buckets) == NB and sum(buckets) == 3
    assert buckets[0] == 1 and buckets[BOUNDS.index(0.005)] == 1 and buckets[-1] == 1
    assert total == pytest.approx(20.0034, abs=1e-5)
    assert sum(obs["service_durations"][3][0]) == 2
    assert obs["requests"] == {(1, "GET", "2xx"): 2, (1, "GET", "4xx"): 1, (0, "OTHER", "err"): 1}
    assert obs["local"] == {(2, 429): 1}
    assert obs["retries"] == {2: 2}


def test_fold_keeps_totals_and_zeroes_gauges(plane):
    w = _worker(plane, 1)
    try:
        for _ in range(5):
            w.observe(0, 0, 0, 0, 200, 0.01, False, 0)
        w.add_misc(0, 7)
        w.set_connections([3] + [0] * 31)
        before = plane.observation_totals()
        assert before["connections"] == {(1, 0, "http1"): 3}
    finally:
        w.close()
    plane.fold_worker(1)
    after = plane.observation_totals()
    assert after["requests"] == before["requests"] == {(0, "GET", "2xx"): 5}
    assert after["router_durations"] == before["router_durations"]
    assert after["misc"]["access_log_lines"] == 7
    assert after["connections"] == {}
    # a new worker in the same slot adds on top of the retired counts
    w2 = _worker(plane, 1)
    try:
        w2.observe(0, 0, 0, 0, 200, 0.01, False, 0)
    finally:
        w2.close()
    assert plane.observation_totals()["requests"] == {(0, "GET", "2xx"): 6}


def test_reset_router_zeroes_a_reused_slot(plane):
    w = _worker(plane, 0)
    try:
        w.observe(4, 5, 0, 0, 503, 0.2, True, 1)
    finally:
        w.close()
    plane.fold_worker(0)
    plane.reset_router(4)
    plane.reset_service(5)
    obs = plane.observation_totals()
    assert 4 not in obs["router_durations"] and 5 not in obs["service_durations"]
    assert obs["local"] == {} and obs["retries"] == {}


def test_master_cannot_observe(plane):
    with pytest.raises(PlaneError):
        plane.observe(0, 0, 0, 0, 200, 0.1, False, 0)


def test_entrypoint_indices_sorted_and_capped():
    names = [f"ep{i:02d}" for i in range(20)]
    idx = entrypoint_indices(reversed(names))
    assert idx["ep00"] == 0 and idx["ep14"] == 14 and idx["ep15"] == idx["ep19"] == 15


# ---------------------------------------------------------------------------------------------- collector


class _FakeArbiter:
    def __init__(self, workers):
        self._w = workers
        self.handles = {}

    def snapshot(self):
        return self._w


def _fake_gateway(plane, routers):
    cfg = types.SimpleNamespace(entrypoints={"web": {"tls": None}})
    g = types.SimpleNamespace(
        _reloads={"total": 3, "failed": 1}, _last_reload={"ok": True, "at": 1700000000.0}, _generation=4,
        _arbiter=_FakeArbiter([{"slot": 0, "pid": 0, "alive": False, "restarts": 2}]),
        _compiled={"slots": {"routers": {r: i for i, r in enumerate(routers)}, "services": {"svc": 0},
                             "backends": {"svc|http://127.0.0.1:1": 0}, "breakers": {"cb|abc": 0}},
                   "config": {"entrypoints": {"web": {}}, "routers": {r: {"service": "svc"} for r in routers}}},
    )
    g.plane = lambda: plane
    g.config = lambda: cfg
    g.control = lambda: {"providers": []}       # no store provider (master/providers/provider.py)
    return g


def test_collector_exposition_text_and_openmetrics(plane):
    w = _worker(plane, 0)
    try:
        for i in range(10):
            w.record(0, 0, 0, 200 if i < 8 else 502, 10, 100)
            w.observe(0, 0, 0, METHOD_INDEX[b"GET"], 200 if i < 8 else 502, 0.002 * i, i >= 8, 0)
    finally:
        w.close()
    m = metrics.Metrics(_fake_gateway(plane, ["api"]))
    text, ctype = m.exposition(None)
    assert ctype.startswith("text/plain")
    body = text.decode()
    assert 'a3s_gateway_requests_total{code_class="2xx",entrypoint="web",method="GET"} 8.0' in body
    assert 'a3s_gateway_router_requests_total{code_class="5xx",router="api",service="svc"} 2.0' in body
    assert 'a3s_gateway_router_request_duration_seconds_count{router="api",service="svc"} 10.0' in body
    assert 'a3s_gateway_router_request_duration_seconds_bucket{le="+Inf",router="api",service="svc"} 10.0' in body
    assert 'a3s_gateway_gateway_responses_total{code="502",router="api"} 2.0' in body
    assert 'a3s_gateway_backend_up{backend="http://127.0.0.1:1",service="svc"} 1.0' in body
    assert 'a3s_gateway_circuit_breaker_state{middleware="cb",state="closed"} 1.0' in body
    assert "a3s_gateway_config_reloads_failed_total 1.0" in body
    assert 'a3s_gateway_worker_restarts_total{slot="0"} 2.0' in body
    assert 'a3s_gateway_process_cpu_seconds_total{process="master"}' in body
    om, octype = m.exposition("application/openmetrics-text; version=1.0.0")
    assert octype.startswith("application/openmetrics-text")
    assert om.rstrip().endswith(b"# EOF")


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian package prometheus)")
def test_collector_output_passes_promtool(plane):
    text, _ = metrics.Metrics(_fake_gateway(plane, ["api", "web"])).exposition(None)
    r = subprocess.run(["promtool", "check", "metrics"], check=False, input=text, capture_output=True, timeout=30)
    assert r.returncode == 0, (r.stdout + r.stderr).decode()


# ---------------------------------------------------------------------------------------------- tracing


def test_traceparent_parsing():
    tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    assert tracing.parse_traceparent(f"00-{tid}-{sid}-01".encode()) == (tid, sid, True)
    assert tracing.parse_traceparent(f"00-{tid}-{sid}-00".encode()) == (tid, sid, False)
    assert tracing.parse_traceparent(f"01-{tid}-{sid}-01-future".encode()) == (tid, sid, True)
    for bad in (f"00-{'0' * 32}-{sid}-01", f"00-{tid}-{'0' * 16}-01", f"ff-{tid}-{sid}-01",
                f"00-{tid}-{sid}-01-extra", f"00-{tid.upper()[:31]}-{sid}-01", "garbage"):
        assert tracing.parse_traceparent(bad.encode()) is None, bad


def test_b3_parsing():
    tid, sid = "80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1"
    assert tracing.parse_b3(f"{tid}-{sid}-1-05e3ac9a4f6e3b90".encode()) == (tid, sid, True)
    assert tracing.parse_b3(f"{tid}-{sid}".encode()) == (tid, sid, None)
    assert tracing.parse_b3(f"{tid[16:]}-{sid}-0".encode()) == ("0" * 16 + tid[16:], sid, False)
    assert tracing.parse_b3(b"1") is None
    assert tracing.parse_b3_multi({b"x-b3-traceid": tid.encode(), b"x-b3-spanid": sid.encode(),
                                   b"x-b3-sampled": b"1"}) == (tid, sid, True)


def _exchange(**fields):
    """A real ``Exchange`` (native when compiled: the tracer and the access log take no stand-in)."""
    ex = Exchange()
    for name, value in fields.items():
        setattr(ex, name, value)
    return ex


def _ex(headers):
    return _exchange(headers=list(headers))


def test_tracer_continues_w3c_and_injects_every_format():
    t = tracing.Tracer({"sample_rate": 0.0, "propagation": ["tracecontext", "b3", "b3multi"]}, None)
    tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    ex = _ex([(b"Traceparent", f"00-{tid}-{sid}-01".encode()), (b"tracestate", b"k=v"), (b"b3", b"junk"),
              (b"Accept", b"*/*")])
    t.start(ex)
    span = ex.span
    assert span.trace_id == tid and span.parent_id == sid and span.sampled     # sampled flag honoured
    h = {k.lower(): v for k, v in ex.headers}
    assert h[b"traceparent"] == f"00-{tid}-{span.client_id}-01".encode()
    assert h[b"tracestate"] == b"k=v"
    assert h[b"b3"] == f"{tid}-{span.client_id}-1-{span.span_id}".encode()
    assert h[b"x-b3-parentspanid"] == span.span_id.encode() and h[b"accept"] == b"*/*"
    assert len([k for k, _ in ex.headers if k.lower() == b"b3"]) == 1


def test_tracer_starts_a_trace_and_samples_by_rate():
    t = tracing.Tracer({"sample_rate": 0.0, "propagation": ["tracecontext"]}, None)
    ex = _ex([])
    t.start(ex)
    assert len(ex.span.trace_id) == 32 and ex.span.parent_id == "" and not ex.span.sampled
    assert ex.headers == [(b"traceparent", f"00-{ex.span.trace_id}-{ex.span.client_id}-00".encode())]


def test_otlp_encoding_shape():
    body = tracing.encode_otlp([("a" * 32, "b" * 16, "", "GET r", 2, 10, 20, True, [("k", 1), ("s", "x")])],
                               "svc", 0)
    import orjson

    doc = orjson.loads(body)
    span = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert span["traceId"] == "a" * 32 and "parentSpanId" not in span and span["status"] == {"code": 2}
    assert span["attributes"][0] == {"key": "k", "value": {"intValue": "1"}}


def test_clock_formats():
    c = Clock()
    assert c.rfc3339(1700000000.1234) == "2023-11-14T22:13:20.123Z"
    assert c.common(1700000000.5) == "14/Nov/2023:22:13:20 +0000"


def test_access_log_fast_path_matches_the_dict_path():
    import asyncio

    import orjson
    from a3s_gateway.shared.config import GatewayConfig
    from a3s_gateway.worker.observability.access_log import AccessLog
    from a3s_gateway.worker.observability.tracing import Span
    from a3s_gateway.worker.runtime import Backend, Route

    cfg = GatewayConfig.from_toml("[access_log]\nenabled = true\n").data["access_log"]
    al = AccessLog(cfg, None, asyncio.new_event_loop(), 3, lambda k, n: None)  # type: ignore[arg-type]
    span = Span.__new__(Span)
    span.trace_id, span.span_id = "a" * 32, "b" * 16
    backend = Backend.__new__(Backend)          # its plane words are not read here
    backend.url = backend.shown_url = "http://b"
    local = Answer(502, [(b"Content-Length", b"20")], b'{"error":"x \\"y\\""}')
    for ex in (
        _exchange(t0=1.0, t_up=1.5, status=200, target=b'/p"\\\xe9?q=1', method=b"GET",
                              headers=[(b"User-Agent", b'ua "1"')], host=b"h", http11=True, req_bytes=5,
                              resp_bytes=7, route=Route('r"', None, 0, None, None), service=None,
                              backend=backend, span=span,
                              local=None),
        _exchange(t0=1.0, t_up=0.0, status=502, target=b"/", method=b"POST", headers=[], host=b"h",
                              http11=False, req_bytes=0, resp_bytes=0, route=None, service=None, backend=None,
                              span=None, local=local),
    ):
        conn = types.SimpleNamespace(client_ip="10.0.0.1", peer=b"10.0.0.1", entrypoint="web",
                                     protocol=b"HTTP/1.0")  # ClientProtocol's
        fast = orjson.loads(al._json(ex, conn, 2.0, 1.0, ex.status))
        slow = orjson.loads(al._json_dict(ex, conn, 2.0, 1.0, ex.status))
        assert fast.pop("time")[:16] == slow.pop("time")[:16]
        assert list(fast) == list(slow) and fast == slow
