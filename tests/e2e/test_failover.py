"""The ``failover`` service kind through the real binary, 2 workers, counting backends."""

from __future__ import annotations

import hashlib
import os

import httpx
import pytest
from harness import Backend, wait_until
from recording_backend import RecordingBackend
from test_weighted import HEAD, client, lb, service_health, spread, weighted


def failover(name: str, primary: str, fallback: str) -> str:
    return f'[services.{name}.failover]\nservice = "{primary}"\nfallback = "{fallback}"\n'


def test_failover_serves_from_fallback_while_primary_is_down_then_503_json_when_both_are(gateway, backends):
    p, f = backends("p"), backends("f")
    g = gateway(HEAD + failover("top", "main", "spare") + lb("main", p.url, health=True)
                + lb("spare", f.url, health=True), workers=2)
    assert set(spread(g, 40, clients=4)) == {"p"}
    p.stop()
    wait_until(lambda: service_health(g, "main") == "down", what="primary down")
    assert spread(g, 40, clients=4) == {"f": 40}
    view = httpx.get(f"{g.admin}/api/services/top").json()
    assert view["kind"] == "failover" and view["health"] == "up"
    assert view["service"] == {"name": "main", "health": "down"} and view["fallback"]["health"] == "up"
    f.stop()
    wait_until(lambda: service_health(g, "top") == "down", what="both down")
    r = httpx.get(g.url + "/")
    assert r.status_code == 503 and r.headers["content-type"].startswith("application/json")
    Backend("p", p.port)
    wait_until(lambda: service_health(g, "main") == "up", what="primary back")
    assert spread(g, 40, clients=4) == {"p": 40}


def test_weighted_service_with_no_live_child_makes_the_failover_above_it_switch(gateway, backends):
    a, f = backends("a"), backends("f")
    config = HEAD + failover("top", "split", "spare") + weighted("split", ("x", 3), ("y", 1)) \
        + lb("x", a.url, health=True) + lb("y", a.url, health=True) + lb("spare", f.url)
    g = gateway(config, workers=2)
    assert set(spread(g, 40, clients=4)) == {"a"}
    a.stop()
    wait_until(lambda: service_health(g, "split") == "down", what="every child of the weighted service down")
    assert spread(g, 40, clients=4) == {"f": 40}


BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nbusy"


@pytest.mark.parametrize("proto", ["http1", "h2c"])
def test_failover_on_a_listed_status_replays_the_body_to_the_fallback_up_to_the_limit(gateway, backends, proto):
    primary = RecordingBackend()
    primary.script["/upload"] = BUSY
    f = backends("f")
    errors = '[services.top.failover.errors]\nstatus = ["500-504"]\nmax_body_bytes = 65536\n'
    g = gateway(HEAD + failover("top", "main", "spare") + errors + lb("main", primary.url) + lb("spare", f.url),
                workers=2)
    c = client(proto)
    try:
        body = os.urandom(40000)
        r = c.post(g.url + "/upload", content=body)
        assert r.status_code == 200 and r.headers["x-backend"] == "f"
        assert r.json()["body_len"] == 40000 and r.json()["body_sha256"] == hashlib.sha256(body).hexdigest()
        seen = [req for c in primary.conns for req in c.requests]
        assert [(m, t, len(b)) for m, t, _h, b in seen] == [("POST", "/upload", 40000)]   # the primary had it whole
        r = c.get(g.url + "/upload")                        # a body-less request fails over too
        assert r.status_code == 200 and r.headers["x-backend"] == "f"
        served = httpx.get(f.url + "/stats").json()["requests"]
        r = c.post(g.url + "/upload", content=os.urandom(70000))  # over max_body_bytes: the 503 stands
        assert (r.status_code, r.text) == (503, "busy")
        assert httpx.get(f.url + "/stats").json()["requests"] == served
        r = c.get(g.url + "/other")                         # an unlisted status (200) stands
        assert r.status_code == 200 and r.text == "ok"
    finally:
        c.close()
        primary.stop()
