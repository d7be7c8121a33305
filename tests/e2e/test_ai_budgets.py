"""token-meter budgets that hold, through the real binary (2 workers) with the official ``openai`` SDK: pre-charge
and reconcile for JSON and streams, the rate-limit headers on every response, 50 concurrent requests, cost mode,
and two gateway nodes sharing one budget in a real redis-server."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import httpx
import openai
import pytest
from ai_support import AiBackend
from harness import Gateway
from stores import RedisServer

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
middlewares = ["budget", "provider"]
[middlewares.provider]
type = "ai-provider"
api_key = "sk-provider"
[middlewares.budget]
type = "token-meter"
window = "1h"
%(budget)s
"""

PROMPT = [{"role": "user", "content": "x" * 40}]      # 10 estimated tokens; with max_tokens=20 a charge of 30


def client(gw: Gateway, key: str = "sk-alice", tokens: int = 30, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0,
                         default_headers={"X-Tokens": str(tokens), **headers})


def test_streams_and_json_answers_are_pre_charged_then_reconciled_per_client_key(gateway) -> None:
    llm = AiBackend("llm")
    try:
        gw = gateway(CONFIG % {"llm": llm.url, "budget": 'max_tokens = 100\nkeys = ["key"]'})
        alice = client(gw)
        raw = alice.chat.completions.with_raw_response.create(model="m", messages=PROMPT, max_tokens=20)
        assert raw.headers["x-ratelimit-limit-tokens"] == "100"
        assert raw.headers["x-ratelimit-remaining-tokens"] == "70"                  # 100 - the charge of 30
        assert raw.headers["x-seen-authorization"] == "Bearer sk-provider"
        with alice.chat.completions.with_streaming_response.create(
                model="m", messages=PROMPT, max_tokens=20, stream=True,
                stream_options={"include_usage": True}) as stream:
            assert stream.headers["x-ratelimit-remaining-tokens"] == "40"          # 30 used + 30 charged
            assert "data: [DONE]" in stream.text()
        # a stream whose real usage (200) is far above its charge: reconciled, so the budget is spent
        big = client(gw, tokens=200)
        with big.chat.completions.with_streaming_response.create(
                model="m", messages=PROMPT, max_tokens=20, stream=True,
                stream_options={"include_usage": True}) as stream:
            stream.read()
        with pytest.raises(openai.RateLimitError) as e:
            alice.chat.completions.create(model="m", messages=PROMPT, max_tokens=20)
        headers = e.value.response.headers
        assert (headers["x-ratelimit-remaining-tokens"], headers["x-ratelimit-limit-tokens"]) == ("0", "100")
        assert int(headers["retry-after"]) >= 1 and e.value.response.json()["key"] == "key:sk-alice"
        other = client(gw, key="sk-bob").chat.completions.with_raw_response.create(
            model="m", messages=PROMPT, max_tokens=20)
        assert other.headers["x-ratelimit-remaining-tokens"] == "70"               # keys are independent
        assert llm.seen() == 4                                                     # the refused one never left
        # a failed answer costs nothing: its charge is given back
        llm.script("500")
        for _ in range(5):
            with pytest.raises(openai.InternalServerError):
                client(gw, key="sk-carol").chat.completions.create(model="m", messages=PROMPT, max_tokens=20)
        llm.script("ok")
        raw = client(gw, key="sk-carol").chat.completions.with_raw_response.create(
            model="m", messages=PROMPT, max_tokens=20)
        assert raw.headers["x-ratelimit-remaining-tokens"] == "70"
    finally:
        llm.stop()


def test_fifty_concurrent_requests_overshoot_by_at_most_one_request(gateway) -> None:
    llm = AiBackend("llm")
    try:
        gw = gateway(CONFIG % {"llm": llm.url, "budget": 'max_tokens = 1000\nkeys = ["global"]'})

        async def one(i: int) -> int:
            async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0,
                                          default_headers={"X-Tokens": "30"}) as c:
                try:
                    await c.chat.completions.create(model="m", messages=PROMPT, max_tokens=20, stream=i % 2 == 1,
                                                    stream_options={"include_usage": True} if i % 2 else None)
                except openai.RateLimitError:
                    return 0
                return 30

        async def all_at_once() -> list[int]:
            return await asyncio.gather(*(one(i) for i in range(50)))

        spent = sum(asyncio.run(all_at_once()))
        assert 1000 <= spent <= 1000 + 30, spent                 # 34 admitted: the last one at 990
        assert llm.seen() == spent // 30
    finally:
        llm.stop()


def test_cost_budget_per_team_with_prices_per_model(gateway) -> None:
    llm = AiBackend("llm")
    budget = """measure = "cost"
max_cost = 0.001
keys = ["team"]
prices = {gpt-4o = {input = 2.5, output = 10.0}}"""
    try:
        gw = gateway(CONFIG % {"llm": llm.url, "budget": budget})
        team = client(gw, **{"X-Team-Id": "blue"})
        remaining = []
        for _ in range(5):                                       # 10 x 2.5 + 20 x 10 = 225 millionths each
            raw = team.chat.completions.with_raw_response.create(model="gpt-4o", messages=PROMPT, max_tokens=20)
            assert raw.headers["x-ratelimit-limit-cost"] == "0.001"
            remaining.append(raw.headers["x-ratelimit-remaining-cost"])
        assert remaining == ["0.000775", "0.00055", "0.000325", "0.0001", "0.0"]
        with pytest.raises(openai.RateLimitError):
            team.chat.completions.create(model="gpt-4o", messages=PROMPT, max_tokens=20)
        with pytest.raises(openai.BadRequestError) as e:         # no price: refused, never free
            team.chat.completions.create(model="unpriced", messages=PROMPT)
        assert e.value.response.json()["model"] == "unpriced"
    finally:
        llm.stop()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed (.ci/install-deps)")
def test_two_gateway_nodes_share_one_budget_in_redis(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    llm = AiBackend("llm")
    nodes: list[Gateway] = []
    try:
        text = CONFIG % {"llm": llm.url, "budget": f'max_tokens = 100\nkeys = ["user"]\n'
                                                   f'redis_url = "redis://127.0.0.1:{redis.port}/0"'}
        for name in ("node1", "node2"):
            (tmp_path / name).mkdir()
            nodes.append(Gateway(text, tmp_path / name))
        statuses = []
        for i in range(6):                                       # 30 each, alternating nodes: 4 admitted (0..90)
            r = httpx.post(nodes[i % 2].url + "/v1/chat/completions", json={"model": "m", "messages": PROMPT,
                           "max_tokens": 20}, headers={"X-User-Id": "dana", "X-Tokens": "30"}, timeout=10)
            statuses.append(r.status_code)
        assert statuses == [200, 200, 200, 200, 429, 429]
        assert r.headers["x-ratelimit-remaining-tokens"] == "0" and int(r.headers["retry-after"]) >= 1
        assert llm.seen() == 4
        keys = redis.cli("--scan", "--pattern", "a3s:tokens:*").split()
        assert len(keys) == 1                                    # one shared window, not one per node
    finally:
        for g in nodes:
            g.stop()
        llm.stop()
        redis.stop()
