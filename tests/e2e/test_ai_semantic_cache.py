"""semantic-cache through the real binary (2 workers) with the official ``openai`` SDK as the client, in front of
the fake OpenAI-compatible backend, which also serves the n-gram ``/v1/embeddings``.

The cache is per worker, so each test sends its requests over one HTTP connection (an httpx pool of one,
shared by every SDK client of the test): one connection is served by one worker, which then holds every entry
the test expects to hit. Upstream calls are counted on the backend, per path.
"""

from __future__ import annotations

import asyncio
import re

import httpx
import openai
import pytest
from ai_support import AiBackend

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
middlewares = ["cache", "provider"]
[middlewares.cache]
type = "semantic-cache"
similarity_threshold = 0.95
[middlewares.cache.embeddings]
url = "%(llm)s/v1/embeddings"
model = "fake-embed"
timeout = "1s"
[middlewares.provider]
type = "ai-provider"
api_key = "sk-provider"
"""

CHAT = "/v1/chat/completions"
BASE = "What is the capital city of France?"


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": text}]


@pytest.fixture
def llm():
    backend = AiBackend("llm")
    yield backend
    backend.stop()


@pytest.fixture
def http():
    with httpx.Client(limits=httpx.Limits(max_connections=1), timeout=10) as client:
        yield client


def sdk(gw, http: httpx.Client, key: str = "sk-tenant-a") -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, http_client=http)


def create(client: openai.OpenAI, text: str, **kwargs):
    kwargs.setdefault("temperature", 0)
    return client.chat.completions.with_raw_response.create(model=kwargs.pop("model", "gpt-4o"),
                                                            messages=ask(text), **kwargs)


def metric(gw, name: str, **labels: str) -> float:
    text = httpx.get(gw.admin + "/api/gateway/metrics", timeout=5).text
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^a3s_gateway_{name}(?:\{{{want}\}})? (\S+)$"
    found = re.search(pattern, text, re.M)
    assert found, (pattern, text[-2000:])
    return float(found.group(1))


def test_exact_hit_answers_from_the_cache_without_the_upstream_and_survives_a_reload(gateway, llm, http) -> None:
    gw = gateway(CONFIG % {"llm": llm.url})
    client = sdk(gw, http)
    first = create(client, BASE)
    assert first.headers["x-cache"] == "MISS"
    assert first.headers["x-seen-authorization"] == "Bearer sk-provider"
    again = create(client, "  What is the   capital city of France?")     # whitespace is normalized
    assert again.headers["x-cache"] == "HIT"
    assert again.parse().model_dump() == first.parse().model_dump()
    assert llm.seen_path(CHAT) == 1
    assert metric(gw, "ai_cache_lookups_total", result="hit") == 1
    assert metric(gw, "ai_cache_lookups_total", result="miss") == 1
    assert metric(gw, "ai_cache_tokens_saved_total") == 30
    gw.reload(CONFIG % {"llm": llm.url} + '[routers.other]\nrule = "Host(`other.test`)"\nservice = "llm"\n')
    assert create(client, BASE).headers["x-cache"] == "HIT"                 # the cache's config is unchanged
    assert llm.seen_path(CHAT) == 1


def test_semantic_hit_above_the_threshold_and_miss_below_it(gateway, llm, http) -> None:
    gw = gateway(CONFIG % {"llm": llm.url})
    client = sdk(gw, http)
    stored = create(client, BASE).parse()
    close = create(client, "what is the capital city of France")              # similarity 0.98 on the fake
    label, score = close.headers["x-cache"].split()
    assert label == "SEMANTIC" and 0.95 <= float(score) < 1
    assert close.parse().id == stored.id
    further = create(client, "What is the capital city of France, please?")  # 0.94: below 0.95
    assert further.headers["x-cache"] == "MISS" and further.parse().id != stored.id
    unrelated = create(client, "How do I bake sourdough bread?")
    assert unrelated.headers["x-cache"] == "MISS"
    assert llm.seen_path(CHAT) == 3
    assert metric(gw, "ai_cache_lookups_total", result="semantic") == 1


def test_entries_are_never_shared_across_tenants_or_models(gateway, llm, http) -> None:
    gw = gateway(CONFIG % {"llm": llm.url})
    alice, bob = sdk(gw, http), sdk(gw, http, "sk-tenant-b")
    assert create(alice, BASE).headers["x-cache"] == "MISS"
    assert create(bob, BASE).headers["x-cache"] == "MISS"                     # same prompt, other tenant
    assert create(bob, "what is the capital city of France").headers["x-cache"].startswith("SEMANTIC")
    assert create(alice, BASE, model="gpt-4o-mini").headers["x-cache"] == "MISS"     # other model
    assert create(alice, "what is the capital city of France",
                  model="gpt-4o-mini").headers["x-cache"].startswith("SEMANTIC")     # its own entry
    assert create(alice, BASE, max_tokens=5).headers["x-cache"] == "MISS"     # other sampling parameters
    assert create(alice, BASE).headers["x-cache"] == "HIT"
    assert create(bob, BASE).headers["x-cache"] == "HIT"
    assert llm.seen_path(CHAT) == 4


def test_only_deterministic_requests_of_a_tenant_are_cached(gateway, llm, http) -> None:
    gw = gateway(CONFIG % {"llm": llm.url})
    client = sdk(gw, http)
    for _ in range(2):
        assert create(client, BASE, temperature=0.7).headers["x-cache"] == "BYPASS"
    anonymous = {"model": "gpt-4o", "messages": ask(BASE), "temperature": 0}
    for _ in range(2):
        r = http.post(gw.url + CHAT, json=anonymous)                         # no client key: no tenant
        assert (r.status_code, r.headers["x-cache"]) == (200, "BYPASS")
    assert llm.seen_path(CHAT) == 4
    assert metric(gw, "ai_cache_lookups_total", result="bypass") == 4


def test_a_stored_completion_is_replayed_as_sse_and_a_stream_is_stored(gateway, llm) -> None:
    gw = gateway(CONFIG % {"llm": llm.url})

    async def scenario() -> None:
        # the async client: the sync one closes a stream at [DONE] unread, which drops the connection
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=1), timeout=10) as http:
            client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="sk-tenant-a", max_retries=0,
                                        http_client=http)

            async def create(text: str, **kwargs):
                return await client.chat.completions.with_raw_response.create(
                    model="gpt-4o", messages=ask(text), temperature=0, **kwargs)

            async def streamed(raw) -> tuple[str, list]:
                chunks = [c async for c in raw.parse()]
                return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks

            stored = (await create(BASE)).parse()
            raw = await create(BASE, stream=True, stream_options={"include_usage": True})
            assert (raw.headers["x-cache"], raw.headers["content-type"]) == ("HIT", "text/event-stream")
            text, chunks = await streamed(raw)
            assert text == stored.choices[0].message.content
            assert chunks[-1].usage.total_tokens == 30 and chunks[0].id == stored.id

            raw = await create("Name a colour.", stream=True, stream_options={"include_usage": True})
            assert raw.headers["x-cache"] == "MISS"
            assert (await streamed(raw))[0] == "Hello there, friend!"
            replayed = await create("Name a colour.")                  # the assembled stream, as JSON
            assert replayed.headers["x-cache"] == "HIT"
            answer = replayed.parse()
            assert answer.choices[0].message.content == "Hello there, friend!"
            assert answer.usage.total_tokens == 30

    asyncio.run(scenario())
    assert llm.seen_path(CHAT) == 2


def test_an_embedding_failure_falls_back_to_exact_matching(gateway, llm, http) -> None:
    gw = gateway(CONFIG % {"llm": llm.url})
    client = sdk(gw, http)
    llm.set_embeddings("fail")
    assert create(client, BASE).headers["x-cache"] == "MISS"
    assert create(client, "what is the capital city of France").headers["x-cache"] == "MISS"
    assert create(client, BASE).headers["x-cache"] == "HIT"
    llm.set_embeddings("slow")                                               # past the 1 s timeout
    assert create(client, "Name a colour.").headers["x-cache"] == "MISS"
    assert metric(gw, "ai_cache_embedding_failures_total") == 3
    assert llm.seen_path(CHAT) == 3
