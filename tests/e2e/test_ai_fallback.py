"""ai-fallback through the real binary (2 workers), the fake providers of ai_backend.py, the official ``openai``
SDK as the client: fallback order on every failure kind, the node-wide 429 cooldown, context-window skips, no
retry once a stream started, and every attempt in the access log and the metrics."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import openai
import pytest
from ai_support import AiBackend
from harness import free_port, wait_until

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[access_log]
enabled = true
path = "%(log)s"
flush_interval = "20ms"
[services.a.load_balancer]
servers = [{url = "%(a)s"}]
timeouts = {response_header = "1s"}
[services.small.load_balancer]
servers = [{url = "%(small)s"}]
[services.b.load_balancer]
servers = [{url = "%(b)s"}]
[services.dead.load_balancer]
servers = [{url = "http://127.0.0.1:%(dead)d"}]
[routers.gpt4o]
rule = "Host(`127.0.0.1`) && Model(`gpt-4o`)"
service = "a"
middlewares = ["gpt4o"]
[routers.resilient]
rule = "Host(`127.0.0.1`) && Model(`resilient`)"
service = "dead"
middlewares = ["resilient"]
[middlewares.gpt4o]
type = "ai-fallback"
cooldown = "1s"
targets = [
  {service = "a", api_key = "sk-a"},
  {service = "small", api_key = "sk-small", model = "small-model", max_input_tokens = 50},
  {service = "b", api_key = "sk-b", model = "gpt-4o-mini"},
]
[routers.capped]
rule = "Host(`127.0.0.1`) && Model(`capped`)"
service = "a"
middlewares = ["capped"]
[middlewares.capped]
type = "ai-fallback"
max_attempts = 2
targets = [{service = "a", api_key = "sk-a"}, {service = "small", api_key = "sk-small"},
           {service = "b", api_key = "sk-b"}]
[middlewares.resilient]
type = "ai-fallback"
targets = [{service = "dead", api_key = "sk-dead"}, {service = "b", api_key = "sk-b"}]
"""

SHORT = [{"role": "user", "content": "hello"}]
LONG = [{"role": "user", "content": "tell me a story " * 20}]      # 320 characters: 80 estimated tokens


@pytest.fixture
def setup(gateway, tmp_path: Path):
    backends = {n: AiBackend(n) for n in ("a", "small", "b")}
    log = tmp_path / "access.log"
    try:
        gw = gateway(CONFIG % {**{n: b.url for n, b in backends.items()}, "dead": free_port(), "log": log})
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-client", max_retries=0)
        yield gw, client, backends, log
    finally:
        for b in backends.values():
            b.stop()


def served(client: openai.OpenAI, messages: list, model: str = "gpt-4o") -> tuple[str, str]:
    raw = client.chat.completions.with_raw_response.create(model=model, messages=messages)
    return raw.headers["x-backend"], raw.parse().model


def attempts(log: Path, model: str, n: int) -> list[list[tuple[str, str]]]:
    """The ``ai`` attempts of the access-log lines of ``model``'s requests, once ``n`` are written, sorted (each
    worker appends its own lines, so lines of sequential requests may come out of order)."""
    def lines() -> list[dict]:
        got = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        got = [e for e in got if e.get("ai", {}).get("model") == model]
        return got if len(got) >= n else []
    entries = wait_until(lines, what=f"{n} access-log lines")
    return sorted([(a["target"], a["outcome"]) for a in e["ai"]["attempts"]] for e in entries)


def attempt_count(gw, middleware: str, target: str, outcome: str) -> float:
    """``a3s_gateway_ai_attempts_total`` of one middleware, target and outcome (0 when absent)."""
    want = (f'middleware="{middleware}"', f'target="{target}"', f'outcome="{outcome}"')
    for line in httpx.get(gw.admin + "/api/gateway/metrics").text.splitlines():
        if line.startswith("a3s_gateway_ai_attempts_total{") and all(w in line for w in want):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_falls_back_in_order_on_5xx_context_errors_timeouts_and_connect_failures(setup) -> None:
    gw, client, backends, log = setup
    a, small, b = backends["a"], backends["small"], backends["b"]
    assert served(client, SHORT) == ("a", "gpt-4o")
    for mode, extra in (("500", {}), ("context", {}), ("slow", {"delay": 3})):
        a.script(mode, **extra)
        assert served(client, SHORT) == ("small", "small-model"), mode      # the next target, its model
        assert small.last()["headers"]["authorization"] == "Bearer sk-small"  # its key, not a's or the client's
    assert a.seen() == 4                                                   # one attempt each: no same-target retry
    assert served(client, LONG) == ("b", "gpt-4o-mini")                    # small's 50-token window: skipped
    assert small.seen() == 3
    assert attempts(log, "gpt-4o", 5) == sorted([
        [("a", "answered")], [("a", "server_error"), ("small", "answered")],
        [("a", "context_window"), ("small", "answered")], [("a", "timeout"), ("small", "answered")],
        [("a", "timeout"), ("small", "skipped_context"), ("b", "answered")]])
    # another client error is the client's: no fallback, the provider's answer as it was
    a.script("bad")
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gpt-4o", messages=SHORT)
    assert "unknown parameter" in str(e.value) and (small.seen(), b.seen()) == (3, 1)
    # a target that refuses connections
    assert served(client, SHORT, "resilient") == ("b", "resilient")
    assert attempts(log, "resilient", 1) == [[("dead", "connect_error"), ("b", "answered")]]
    assert attempt_count(gw, "gpt4o", "a", "timeout") == 2
    assert attempt_count(gw, "gpt4o", "small", "skipped_context") == 1
    assert attempt_count(gw, "resilient", "dead", "connect_error") == 1


def test_a_429_cools_the_target_down_on_every_worker_for_its_retry_after(setup) -> None:
    gw, client, backends, log = setup
    a, small = backends["a"], backends["small"]
    a.script("429", retry_after=3)
    assert served(client, SHORT) == ("small", "small-model")
    a.script("ok")
    down = httpx.get(gw.admin + "/api/services/a").json()["servers"][0]["passive"]["down_for_s"]
    assert 1.5 < down <= 3                          # Retry-After, not the 1 s default cooldown
    for _ in range(8):                              # a new connection each: both workers answer some
        with openai.OpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0) as c:
            assert served(c, SHORT)[0] == "small"
    assert a.seen() == 1                            # no worker asked the cooling target
    assert attempts(log, "gpt-4o", 9)[0] == [("a", "rate_limited"), ("small", "answered")]
    assert attempts(log, "gpt-4o", 9)[1:] == [[("a", "skipped_cooldown"), ("small", "answered")]] * 8
    t0 = time.monotonic()
    wait_until(lambda: served(client, SHORT)[0] == "a", timeout=6, interval=0.2, what="the cooldown to end")
    assert time.monotonic() - t0 > 1.0
    # without Retry-After: the configured cooldown; everything cooling: 503 with Retry-After
    a.script("429")
    small.script("429")
    backends["b"].script("429")
    with pytest.raises(openai.RateLimitError):      # the last target's own 429 stands
        client.chat.completions.create(model="gpt-4o", messages=SHORT)
    r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "gpt-4o", "messages": SHORT})
    assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1 and "cooling" in r.json()["error"]


def test_a_stream_that_started_is_never_retried(setup) -> None:
    _, client, backends, _ = setup
    a, small = backends["a"], backends["small"]
    a.script("cut")
    stream = client.chat.completions.create(model="gpt-4o", messages=SHORT, stream=True)
    with pytest.raises((openai.APIError, httpx.HTTPError)):
        for _ in stream:
            pass
    assert small.seen() == 0 and a.seen() == 1
    a.script("ok")
    stream = client.chat.completions.create(model="gpt-4o", messages=SHORT, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hello there, friend!"


def test_a_prompt_larger_than_every_context_window_is_refused(gateway, tmp_path: Path) -> None:
    b = AiBackend("b")
    try:
        gw = gateway(CONFIG.replace('{service = "a", api_key = "sk-a"}', '{service = "a", api_key = "sk-a", '
                                    'max_input_tokens = 10}').replace('model = "gpt-4o-mini"}',
                                                                      'model = "gpt-4o-mini", max_input_tokens = 20}')
                     % {"a": b.url, "small": b.url, "b": b.url, "dead": free_port(), "log": tmp_path / "l"})
        r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "gpt-4o", "messages": LONG})
        assert (r.status_code, r.json()["code"], r.json()["estimated_tokens"]) == (400, "context_length_exceeded",
                                                                                  80)
        assert b.seen() == 0
    finally:
        b.stop()


def test_fallback_replays_the_body_for_an_http2_client(setup) -> None:
    gw, _, backends, _ = setup
    backends["a"].script("500")
    with httpx.Client(base_url=gw.url, http1=False, http2=True, timeout=10) as c:
        for _ in range(2):
            r = c.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": LONG})
            assert (r.http_version, r.status_code, r.headers["x-backend"]) == ("HTTP/2", 200, "b"), r.text
            assert r.json()["model"] == "gpt-4o-mini"
    sent = backends["b"].last()
    assert sent["body"] == {"model": "gpt-4o-mini", "messages": LONG}
    assert sent["headers"]["authorization"] == "Bearer sk-b" and "transfer-encoding" not in sent["headers"]


def test_max_attempts_counts_every_target_and_the_last_answer_stands(setup) -> None:
    _, client, backends, log = setup
    backends["a"].script("500")
    backends["small"].script("500")
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="capped", messages=SHORT)
    assert (backends["a"].seen(), backends["small"].seen(), backends["b"].seen()) == (1, 1, 0)
    assert attempts(log, "capped", 1) == [[("a", "server_error"), ("small", "server_error")]]
