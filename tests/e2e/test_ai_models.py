"""Model() routing, ai-provider (model rewrite, provider key injection) and bad bodies, through the real binary
(2 workers) with the official ``openai`` SDK as the client."""

from __future__ import annotations

import httpx
import openai
import pytest
from ai_support import AiBackend

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[limits]
model_inspect_bytes = 4096
[services.openai.load_balancer]
servers = [{url = "%(a)s"}]
[services.azure.load_balancer]
servers = [{url = "%(b)s"}]
[services.other.load_balancer]
servers = [{url = "%(c)s"}]
[routers.gpt4o]
rule = "Host(`127.0.0.1`) && PathPrefix(`/v1`) && Model(`gpt-4o`, `gpt-4o-*`)"
service = "openai"
middlewares = ["openai-key"]
[routers.mini]
rule = "Host(`127.0.0.1`) && Model(`mini`) && Header(`X-Team`, `blue`)"
service = "azure"
middlewares = ["azure-key"]
[routers.uploads]
rule = "Host(`files.test`)"
service = "other"
[middlewares.openai-key]
type = "ai-provider"
api_key = "sk-provider-a"
[middlewares.azure-key]
type = "ai-provider"
api_key_env = "AZURE_TEST_KEY"
header = "X-Api-Key"
scheme = ""
models = {mini = "gpt-4o-mini-2024-07-18"}
"""

ASK = [{"role": "user", "content": "hello"}]


@pytest.fixture
def setup(gateway):
    backends = [AiBackend(n) for n in ("a", "b", "c")]
    try:
        gw = gateway(CONFIG % {"a": backends[0].url, "b": backends[1].url, "c": backends[2].url},
                     env={"AZURE_TEST_KEY": "azure-secret"})
        yield gw, backends
    finally:
        for b in backends:
            b.stop()


def test_routes_by_model_rewrites_and_injects_the_provider_key(setup) -> None:
    gw, _ = setup
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-client-key", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-2024-08-06", messages=ASK)
    assert raw.headers["x-backend"] == "a"
    assert raw.headers["x-seen-authorization"] == "Bearer sk-provider-a"      # the client's key never forwarded
    assert raw.parse().model == "gpt-4o-2024-08-06"                            # no rewrite configured
    assert client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=ASK).headers["x-backend"] == "a"

    blue = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-client-key", max_retries=0,
                         default_headers={"X-Team": "blue"})
    raw = blue.chat.completions.with_raw_response.create(model="mini", messages=ASK, stream=False)
    assert (raw.headers["x-backend"], raw.parse().model) == ("b", "gpt-4o-mini-2024-07-18")
    assert (raw.headers["x-seen-api-key"], raw.headers["x-seen-authorization"]) == ("azure-secret", "")
    stream = blue.chat.completions.create(model="mini", messages=ASK, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hello there, friend!"

    with pytest.raises(openai.NotFoundError):                                  # no Header(X-Team): no router
        client.chat.completions.create(model="mini", messages=ASK)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4", messages=ASK)


def test_bad_bodies_get_json_errors_and_other_hosts_are_not_inspected(setup) -> None:
    gw, _ = setup
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        r = c.post("/v1/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"})
        assert (r.status_code, r.headers["content-type"]) == (400, "application/json")
        assert "not JSON" in r.json()["error"]
        r = c.post("/v1/chat/completions", json={"model": 4, "messages": ASK})
        assert (r.status_code, r.json()["got"]) == (400, "int")
        r = c.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": ASK, "pad": "x" * 5000})
        assert (r.status_code, r.json()["max_bytes"]) == (413, 4096)
        r = c.post("/v1/chat/completions", content=(b"x" * 3000 for _ in range(3)))   # chunked, over the limit
        assert r.status_code == 413
        r = c.get("/v1/models")                                                 # no body: Model() cannot match
        assert r.status_code == 404
        r = c.post("/upload", content=b"\x00" * 10000, headers={"Host": "files.test"})
        assert (r.status_code, r.json().get("name")) == (200, "c"), r.text       # a host without Model() routers
        r = c.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": ASK})
        assert r.status_code == 200                                             # the worker is fine
