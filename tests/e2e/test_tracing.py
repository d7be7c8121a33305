"""Distributed tracing through the real binary: traceparent continued, B3 single and multi accepted, a trace
started when none arrives, ids verified at the backend, spans exported to an OTLP/HTTP receiver, and a dead
collector never failing requests."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from harness import free_port, wait_until
from obs_util import OtlpSink, json_lines, scrape, value

BASE = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[routers.api]
rule = "PathPrefix(`/`)"
service = "svc"
[services.svc.load_balancer]
servers = [{url = "BACKEND"}]
"""

TID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TP_RE = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-0([01])")


def _cfg(backend_url: str, tracing: str = "", log=None) -> str:
    text = BASE.replace("BACKEND", backend_url) + "\n[tracing]\nenabled = true\n" + tracing
    if log is not None:
        text += f'\n[access_log]\nenabled = true\npath = "{log}"\nflush_interval = "20ms"\n'
    return text


@pytest.fixture
def sink():
    s = OtlpSink()
    yield s
    s.close()


def _seen(g, headers: dict[str, str]) -> dict[str, list[str]]:
    r = httpx.get(g.url + "/echo", headers=headers, timeout=5)
    assert r.status_code == 200
    return r.json()["headers"]


def test_traceparent_is_continued_with_the_gateways_span_as_parent(gateway, backends, tmp_path):
    log = tmp_path / "access.log"
    g = gateway(_cfg(backends().url, log=log), workers=2)
    seen = _seen(g, {"traceparent": f"00-{TID}-{PARENT}-01", "tracestate": "vendor=abc"})
    (tp,) = seen["traceparent"]
    tid, parent, sampled = TP_RE.fullmatch(tp).groups()
    assert tid == TID and parent != PARENT and sampled == "1"
    assert seen["tracestate"] == ["vendor=abc"]
    line = wait_until(lambda: json_lines(log), what="access log line")[0]
    assert line["trace_id"] == TID and re.fullmatch(r"[0-9a-f]{16}", line["span_id"])


def test_a_trace_is_started_when_none_arrives(gateway, backends):
    g = gateway(_cfg(backends().url), workers=2)
    a = TP_RE.fullmatch(_seen(g, {})["traceparent"][0]).groups()
    b = TP_RE.fullmatch(_seen(g, {})["traceparent"][0]).groups()
    assert a[0] != b[0] and a[0] != "0" * 32 and a[2] == "1"


def test_unsampled_flag_is_honoured_and_sample_rate_zero_starts_unsampled(gateway, backends):
    g = gateway(_cfg(backends().url, "sample_rate = 0.0\n"), workers=1)
    tid, _, sampled = TP_RE.fullmatch(_seen(g, {"traceparent": f"00-{TID}-{PARENT}-00"})["traceparent"][0]).groups()
    assert tid == TID and sampled == "0"
    assert TP_RE.fullmatch(_seen(g, {})["traceparent"][0]).group(3) == "0"


def test_b3_single_header_is_accepted_and_b3_formats_injected(gateway, backends):
    g = gateway(_cfg(backends().url, 'propagation = ["tracecontext", "b3", "b3multi"]\n'), workers=2)
    b3_tid, b3_sid = "80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1"
    seen = _seen(g, {"b3": f"{b3_tid}-{b3_sid}-1-05e3ac9a4f6e3b90"})
    tid, client_span, _ = TP_RE.fullmatch(seen["traceparent"][0]).groups()
    assert tid == b3_tid and client_span != b3_sid
    b3 = seen["b3"][0].split("-")
    assert b3[0] == b3_tid and b3[1] == client_span and b3[2] == "1" and len(b3[3]) == 16
    assert seen["x-b3-traceid"] == [b3_tid] and seen["x-b3-spanid"] == [client_span]
    assert seen["x-b3-parentspanid"] == [b3[3]] and seen["x-b3-sampled"] == ["1"]


def test_b3_multi_headers_are_accepted(gateway, backends):
    g = gateway(_cfg(backends().url), workers=2)
    tid64 = "a3ce929d0e0e4736"
    seen = _seen(g, {"X-B3-TraceId": tid64, "X-B3-SpanId": PARENT, "X-B3-Sampled": "1"})
    tid, parent, sampled = TP_RE.fullmatch(seen["traceparent"][0]).groups()
    assert tid == "0" * 16 + tid64 and parent != PARENT and sampled == "1"
    assert "x-b3-traceid" not in seen          # replaced by the configured format (tracecontext)


def test_spans_are_exported_over_otlp_with_ids_names_status_and_timing(gateway, backends, sink):
    g = gateway(_cfg(backends().url, f'[tracing.otlp]\nendpoint = "{sink.url}"\nflush_interval = "100ms"\n'),
                workers=2)
    start = time.time_ns()
    seen = _seen(g, {"traceparent": f"00-{TID}-{PARENT}-01"})
    _, client_span, _ = TP_RE.fullmatch(seen["traceparent"][0]).groups()
    r = httpx.get(g.url + "/status/503", headers={"traceparent": f"00-{'1' * 32}-{PARENT}-01"}, timeout=5)
    assert r.status_code == 503
    end = time.time_ns()
    spans = wait_until(lambda: len(sink.spans()) >= 4 and sink.spans(), what="4 spans exported")
    ours = [s for s in spans if s["traceId"] == TID]
    server = next(s for s in ours if s["kind"] == 2)
    client = next(s for s in ours if s["kind"] == 3)
    assert server["parentSpanId"] == PARENT
    assert client["spanId"] == client_span and client["parentSpanId"] == server["spanId"]
    assert server["name"] == "GET api" and server["status"] == {"code": 0}
    attrs = {a["key"]: a["value"] for a in server["attributes"]}
    assert attrs["http.response.status_code"] == {"intValue": "200"} and attrs["http.route"] == {"stringValue": "api"}
    for s in (server, client):
        assert start <= int(s["startTimeUnixNano"]) <= int(s["endTimeUnixNano"]) <= end
    assert int(server["startTimeUnixNano"]) <= int(client["startTimeUnixNano"])
    failed = next(s for s in spans if s["traceId"] == "1" * 32 and s["kind"] == 2)
    assert failed["status"] == {"code": 2}
    assert sink.requests[0]["path"] == "/v1/traces"
    assert sink.requests[0]["headers"]["Content-Type"] == "application/json"
    resource = {a["key"]: a["value"] for a in sink.requests[0]["body"]["resourceSpans"][0]["resource"]["attributes"]}
    assert resource["service.name"] == {"stringValue": "a3s-gateway"}
    wait_until(lambda: value(scrape(g), "a3s_gateway_tracing_spans_exported_total") >= 4, what="spans counted")


def test_a_dead_collector_never_fails_requests_and_drops_are_counted(gateway, backends):
    dead = free_port()
    g = gateway(_cfg(backends().url, f'[tracing.otlp]\nendpoint = "http://127.0.0.1:{dead}/v1/traces"\n'
                                     'flush_interval = "50ms"\n'), workers=2)
    for _ in range(20):
        assert httpx.get(g.url + "/x", timeout=5).status_code == 200
    wait_until(lambda: value(scrape(g), "a3s_gateway_tracing_spans_dropped_total") >= 40, what="drops counted")
