"""privacy-router, conversation affinity and model health probes through the real binary."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
from ai_support import AiBackend
from harness import wait_until

PRIVACY = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[services.cloud.load_balancer]
servers = [{url = "%(cloud)s"}]
[services.tee.load_balancer]
servers = [{url = "%(tee)s"}]
[routers.chat]
rule = "PathPrefix(`/chat`)"
service = "cloud"
middlewares = ["privacy"]
[routers.redacted]
rule = "PathPrefix(`/redact`)"
service = "cloud"
middlewares = ["privacy-redact"]
[middlewares.privacy]
type = "privacy-router"
tee_service = "tee"
sensitive_keywords = ["project falcon"]
max_inspect_bytes = 4096
[middlewares.privacy-redact]
type = "privacy-router"
tee_service = "tee"
redact = true
"""


def test_privacy_router_sends_sensitive_content_to_the_tee_service(gateway) -> None:
    cloud, tee = AiBackend("cloud"), AiBackend("tee")
    try:
        gw = gateway(PRIVACY % {"cloud": cloud.url, "tee": tee.url})
        with httpx.Client(base_url=gw.url, timeout=10) as c:
            def ask(text: str, path: str = "/chat", **headers: str) -> dict:
                r = c.post(path, json={"messages": [{"role": "user", "content": text}]}, headers=headers)
                assert r.status_code == 200, r.text
                return r.json()

            r = ask("charge card 4111 1111 1111 1111 please", **{"X-Privacy-Level": "public"})
            assert (r["name"], r["headers"]["x-privacy-level"]) == ("tee", "restricted")
            r = ask("charge card 4111 1111 1111 1112 please", **{"X-Privacy-Level": "restricted"})
            assert (r["name"], r["headers"]["x-privacy-level"]) == ("cloud", "public")
            assert "4111 1111 1111 1112" in r["body"]       # untouched body reaches the backend
            assert ask("my SSN is 123-45-6789")["name"] == "tee"
            assert ask("wire to GB82 WEST 1234 5698 7654 32")["headers"]["x-privacy-level"] == "confidential"
            assert ask("status of Project Falcon?")["name"] == "tee"        # user keyword -> threshold
            r = ask("write me at a.person@example.com")
            assert (r["name"], r["headers"]["x-privacy-level"]) == ("cloud", "internal")
            assert ask("what is the weather")["headers"]["x-privacy-level"] == "public"
            # a long body: only the first max_inspect_bytes are classified, the whole body streams on
            long_text = "x" * 8000 + " 4111 1111 1111 1111"
            r = ask(long_text)
            assert r["name"] == "cloud" and long_text in r["body"]
            r = ask("key sk-abcdefghijklmnopqrstuvwxyz123456 inside " + "y" * 100 + " 4111 1111 1111 1111"[:0])
            assert r["name"] == "tee"
            # redaction below the threshold
            r = ask("mail a.person@example.com or call +1 415 555 0100", path="/redact")
            assert r["name"] == "cloud" and "a.person@example.com" not in r["body"]
            assert "[REDACTED:email]" in r["body"] and "[REDACTED:phone]" in r["body"]
    finally:
        cloud.stop()
        tee.stop()


def test_privacy_router_rewrites_an_http2_stream_body_with_one_framing(gateway) -> None:
    """Over HTTP/2 a body without a declared length is read whole, redacted and forwarded to the HTTP/1.1
    backend with its exact Content-Length and no chunked framing beside it."""
    cloud, tee = AiBackend("cloud"), AiBackend("tee")
    try:
        gw = gateway(PRIVACY % {"cloud": cloud.url, "tee": tee.url})
        text = json.dumps({"messages": [{"role": "user", "content": "mail a.person@example.com"}]}).encode()

        def stream() -> Iterator[bytes]:
            yield text[:10]
            yield text[10:]

        with httpx.Client(http2=True, http1=False, timeout=10) as c:
            r = c.post(f"{gw.url}/redact", content=stream(), headers={"content-type": "application/json"})
        assert (r.status_code, r.http_version) == (200, "HTTP/2"), r.text
        seen = r.json()
        assert seen["name"] == "cloud" and "[REDACTED:email]" in seen["body"]
        assert "transfer-encoding" not in seen["headers"]
        assert seen["headers"]["content-length"] == str(len(seen["body"].encode()))
    finally:
        cloud.stop()
        tee.stop()


AFFINITY = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[services.agents.load_balancer]
servers = [{url = "%(a)s"}, {url = "%(b)s"}, {url = "%(c)s"}]
passive_health = {max_failures = 1, cooldown = "30s"}
[services.agents.load_balancer.affinity]
ttl = "10m"
cookie = "conv"
[routers.all]
rule = "PathPrefix(`/`)"
service = "agents"
"""


def test_affinity_pins_a_conversation_across_workers_and_moves_off_a_dead_backend(gateway) -> None:
    bs = [AiBackend(n) for n in ("a", "b", "c")]
    try:
        gw = gateway(AFFINITY % {"a": bs[0].url, "b": bs[1].url, "c": bs[2].url}, workers=4)
        names = set()
        for _ in range(50):          # 50 new connections, spread over 4 workers by SO_REUSEPORT
            r = httpx.get(gw.url + "/x", headers={"x-CONVERSATION-id": "conv-1"})
            names.add(r.json()["name"])
        assert len(names) == 1
        pinned = names.pop()
        others = set()
        for i in range(30):
            others.add(httpx.get(gw.url + "/x", headers={"X-Conversation-Id": f"other-{i}"}).json()["name"])
        assert len(others) > 1                                   # other conversations spread out
        assert httpx.get(gw.url + "/x", cookies={"conv": "conv-1"}).json()["name"] == pinned   # cookie works too
        victim = next(b for b in bs if b.name == pinned)
        victim.stop()
        moved = set()
        for _ in range(20):
            r = httpx.get(gw.url + "/x", headers={"X-Conversation-Id": "conv-1"})
            if r.status_code == 200:
                moved.add(r.json()["name"])
        assert len(moved) == 1 and pinned not in moved           # re-bound once, then pinned again
    finally:
        for b in bs:
            b.stop()


PROBE = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[services.llm.load_balancer]
servers = [{url = "%(a)s"}, {url = "%(b)s"}]
[services.llm.load_balancer.agent_health]
interval = "100ms"
timeout = "1s"
failure_threshold = 2
[routers.all]
rule = "PathPrefix(`/`)"
service = "llm"
"""


def test_model_probe_states_drive_routing(gateway) -> None:
    a, b = AiBackend("a", health="loading"), AiBackend("b", health="ready")
    try:
        gw = gateway(PROBE % {"a": a.url, "b": b.url}, workers=2)

        def states() -> dict[str, str]:
            agents = gw.health()["control"]["agent_health"]
            return {v["backend_url"]: v["status"] for v in agents.values()}

        def names(n: int = 12) -> set[str]:
            return {httpx.get(gw.url + "/q").json().get("name") for _ in range(n)}

        wait_until(lambda: states() == {a.url: "loading", b.url: "ready"}, what="initial probe states")
        assert names() == {"b"}                                  # loading gets nothing
        a.set_health("ready")
        wait_until(lambda: states()[a.url] == "ready", what="a ready")
        wait_until(lambda: names() == {"a", "b"}, what="both serve")
        b.set_health("busy")
        wait_until(lambda: states()[b.url] == "busy", what="b busy")
        assert names() == {"a"}                                  # busy gets nothing while one is ready
        a.set_health("error")
        wait_until(lambda: states()[a.url] == "error", what="a error")
        assert names() == {"b"}                                  # busy is the fallback when none is ready
        a.set_health("down")
        wait_until(lambda: states()[a.url] == "unreachable", what="a unreachable after 2 failures")
        snap = next(v for v in gw.health()["control"]["agent_health"].values() if v["backend_url"] == b.url)
        assert snap["model_name"] == "fake-llm" and snap["last_latency_ms"] is not None
        b.stop()
        wait_until(lambda: states()[b.url] == "unreachable", what="b unreachable")
        assert httpx.get(gw.url + "/q").status_code == 503
    finally:
        a.stop()
        b.stop()


