"""The Anthropic Messages translation (``format = "anthropic"``) through the real binary (2 workers), with the
official ``openai`` SDK as the client: JSON and streaming both ways, on its own and as an ai-fallback target."""

from __future__ import annotations

import openai
import pytest
from ai_support import AiBackend

CONFIG = """
[entrypoints.web]
address = "127.0.0.1:{web}"
[admin]
address = "127.0.0.1:{admin}"
[services.claude.load_balancer]
servers = [{url = "%(claude)s"}]
[services.openai.load_balancer]
servers = [{url = "%(openai)s"}]
[routers.claude]
rule = "Host(`127.0.0.1`) && Model(`claude-sonnet`)"
service = "claude"
middlewares = ["anthropic"]
[routers.mixed]
rule = "Host(`127.0.0.1`) && Model(`best`)"
service = "openai"
middlewares = ["best"]
[middlewares.anthropic]
type = "ai-provider"
format = "anthropic"
api_key = "sk-ant"
models = {claude-sonnet = "claude-sonnet-4-5"}
[middlewares.best]
type = "ai-fallback"
targets = [
  {service = "claude", format = "anthropic", api_key = "sk-ant", model = "claude-opus-4-1"},
  {service = "openai", api_key = "sk-openai", model = "gpt-4o"},
]
"""

ASK = [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "hello"}]


@pytest.fixture
def setup(gateway):
    claude, oa = AiBackend("claude"), AiBackend("openai")
    try:
        gw = gateway(CONFIG % {"claude": claude.url, "openai": oa.url})
        yield openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-client", max_retries=0), claude, oa
    finally:
        claude.stop()
        oa.stop()


def test_chat_completions_become_anthropic_messages_and_back(setup) -> None:
    client, claude, _ = setup
    raw = client.chat.completions.with_raw_response.create(model="claude-sonnet", messages=ASK, max_tokens=50,
                                                           stop="END", user="u1")
    answer = raw.parse()
    assert answer.object == "chat.completion" and answer.model == "claude-sonnet-4-5"
    assert answer.choices[0].message.content == "Hello from Claude, system=Be brief"
    assert answer.choices[0].finish_reason == "stop"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (10, 20, 30)
    assert (raw.headers["x-seen-api-key"], raw.headers["x-seen-version"]) == ("sk-ant", "2023-06-01")
    sent = claude.last()
    assert sent["path"] == "/v1/messages" and "authorization" not in sent["headers"]
    assert sent["body"] == {"model": "claude-sonnet-4-5", "system": "Be brief", "max_tokens": 50,
                            "messages": [{"role": "user", "content": "hello"}], "stop_sequences": ["END"],
                            "metadata": {"user_id": "u1"}}


def test_an_anthropic_event_stream_becomes_openai_chunks_with_usage(setup) -> None:
    client, claude, _ = setup
    chunks = list(client.chat.completions.create(model="claude-sonnet", messages=ASK, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from Claude"
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].model == "claude-sonnet-4-5"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (10, 20)
    assert claude.last()["body"]["stream"] is True and claude.last()["body"]["max_tokens"] == 4096


def test_anthropic_errors_and_fallbacks_between_the_two_formats(setup) -> None:
    client, claude, oa = setup
    claude.script("bad")
    with pytest.raises(openai.BadRequestError) as e:              # an Anthropic error, in OpenAI's shape
        client.chat.completions.create(model="claude-sonnet", messages=ASK)
    assert e.value.body["message"] == "unknown parameter 'foo'"
    claude.script("ok")
    answer = client.chat.completions.create(model="best", messages=ASK)
    assert answer.model == "claude-opus-4-1" and answer.choices[0].message.content.startswith("Hello from Claude")
    claude.script("500")                                           # Anthropic fails: the OpenAI target gets the
    raw = client.chat.completions.with_raw_response.create(model="best", messages=ASK)   # client's own format
    assert raw.headers["x-backend"] == "openai" and raw.parse().model == "gpt-4o"
    sent = oa.last()
    assert sent["path"] == "/v1/chat/completions" and sent["body"]["messages"] == ASK
    assert sent["headers"]["authorization"] == "Bearer sk-openai" and "x-api-key" not in sent["headers"]
    assert "anthropic-version" not in sent["headers"]
    stream = client.chat.completions.create(model="best", messages=ASK, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hello there, friend!"
