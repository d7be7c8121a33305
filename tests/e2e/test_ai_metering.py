"""token-meter through the real binary, 4 workers, a fake OpenAI-compatible backend (JSON and SSE)."""

from __future__ import annotations

import time

import httpx
from ai_support import AiBackend
from harness import wait_until

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[services.llm.load_balancer]
servers = [{url = "%(llm)s"}]
[routers.llm]
rule = "PathPrefix(`/v1`)"
service = "llm"
middlewares = ["meter"]
[middlewares.meter]
type = "token-meter"
max_tokens = 100
window = "2s"
keys = ["user", "global"]
limits = {global = {max_tokens = 100000}}
overrides = {"user:vip" = {max_tokens = 1000}}
"""


def chat(url: str, user: str, stream: bool = False, **headers: str) -> httpx.Response:
    # a new connection per request: SO_REUSEPORT spreads them over the workers
    with httpx.Client(timeout=10) as c:
        r = c.post(url + "/v1/chat/completions", json={"stream": stream, "messages": []},
                   headers={"X-User-Id": user, **headers})
        r.read()
        return r


def test_token_budget_is_enforced_across_workers_and_the_window_slides(gateway) -> None:
    llm = AiBackend("llm")
    try:
        gw = gateway(CONFIG % {"llm": llm.url}, workers=4)
        t0 = time.monotonic()
        for _ in range(2):
            r = chat(gw.url, "alice")
            assert r.status_code == 200 and r.json()["usage"]["total_tokens"] == 30
        while time.monotonic() < t0 + 1.0:       # the second half of the window
            time.sleep(0.01)
        for _ in range(2):
            r = chat(gw.url, "alice", stream=True)
            assert r.status_code == 200 and "data: [DONE]" in r.text       # the stream passed unchanged
        r = chat(gw.url, "alice")                    # 120 tokens used (the last request started at 90)
        assert r.status_code == 429, r.text
        assert r.json()["error"] == "Token budget exceeded" and r.json()["key"] == "user:alice"
        assert r.headers["x-token-limit"] == "100" and r.headers["x-token-remaining"] == "0"
        assert 1 <= int(r.headers["retry-after"]) <= 2
        assert chat(gw.url, "bob").status_code == 200             # other users are independent
        assert chat(gw.url, "vip", **{"X-Tokens": "500"}).status_code == 200
        assert chat(gw.url, "vip").status_code == 200             # per-key override: 1000
        # the window slides: the first 60 tokens age out, the streamed 60 still count
        ok = wait_until(lambda: chat(gw.url, "alice").status_code == 200, timeout=5, interval=0.05,
                        what="budget frees as the window slides")
        elapsed = time.monotonic() - t0
        assert 1.4 < elapsed < 3.2, elapsed
        assert ok
        assert chat(gw.url, "alice").status_code == 429           # 60 + 30 + 30 >= 100: not a reset
    finally:
        llm.stop()


def test_usage_is_estimated_without_a_usage_object(gateway) -> None:
    llm = AiBackend("llm")
    try:
        gw = gateway(CONFIG.replace("max_tokens = 100\n", "max_tokens = 25\n") % {"llm": llm.url}, workers=2)
        r = chat(gw.url, "carol", **{"X-No-Usage": "1"})          # 40 characters -> 10 tokens
        assert r.status_code == 200 and r.headers["x-token-limit"] == "25"
        assert chat(gw.url, "carol", **{"X-No-Usage": "1"}).status_code == 200
        assert chat(gw.url, "carol", **{"X-No-Usage": "1"}).status_code == 200   # 20 < 25
        assert chat(gw.url, "carol", **{"X-No-Usage": "1"}).status_code == 429   # 30 >= 25
    finally:
        llm.stop()
