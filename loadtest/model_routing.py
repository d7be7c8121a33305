"""CPU that ``Model()`` routing adds per request: inspecting a complete 2 KiB JSON body and matching the rules;
then what a provider target adds on top (``ai-fallback`` / ``ai-provider``): the prompt's token estimate, and the
model rewrite with the key swap (``Provider.apply``, re-serializing the body), or the Anthropic translation.

Runs ``ai_body.inspect`` (read from ``pending``, parse, forward) and a ``RouterTable.match`` over a Model() rule
against a plain ``PathPrefix`` match on the same request; the difference is what body inspection costs. The
event-loop task an asynchronous request phase needs (a few µs, shared with every async middleware) is not in it.

    python loadtest/model_routing.py [--requests N] [--body-bytes B]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from types import SimpleNamespace

import orjson
from a3s_gateway.shared.rules import parse_rule
from a3s_gateway.worker.exchange import Exchange
from a3s_gateway.worker.limits import Limits
from a3s_gateway.worker.middlewares._support import ai_body
from a3s_gateway.worker.middlewares.ai_provider import Provider
from a3s_gateway.worker.router import RequestView, RouterTable


def body_of(size: int) -> bytes:
    doc = {"messages": [{"role": "user", "content": ""}], "model": "gpt-4o-mini", "temperature": 0}
    pad = size - len(orjson.dumps(doc))
    doc["messages"][0]["content"] = "x" * max(0, pad)
    return orjson.dumps(doc)


async def run(n: int, body: bytes) -> tuple[float, float]:
    route = SimpleNamespace(priority=0, name="r", rule=parse_rule("Host(`a`) && Model(`gpt-4o`, `gpt-4o-*`)"))
    plain = SimpleNamespace(priority=0, name="p", rule=parse_rule("Host(`a`) && PathPrefix(`/v1`)"))
    tables = RouterTable([route]), RouterTable([plain])
    conn = SimpleNamespace(worker=SimpleNamespace(limits=Limits()))
    times = []
    for inspect, table in ((True, tables[0]), (False, tables[1])):
        t0 = time.perf_counter()
        for _ in range(n):
            ex = Exchange()
            ex.conn, ex.req_done, ex.req_has_body, ex.headers = conn, True, True, []
            ex.pending, ex.pending_bytes = [body], len(body)
            view = RequestView("a", "/v1/chat/completions", "POST", [], b"", "127.0.0.1")
            if inspect and table.needs_body(view.host):
                view.model = (await ai_body.inspect(ex)).model
            assert table.match(view) is not None
        times.append((time.perf_counter() - t0) / n * 1e6)
    return times[0], times[1]


def provider_cost(n: int, body: bytes, fmt: str) -> float:
    """µs per request of the estimate and ``Provider.apply`` (rewrite, key) on a parsed body."""
    provider = Provider({"models": {"*": "gpt-4o-2024-08-06"}, "format": fmt, "header": None, "scheme": None,
                         "api_key": "sk-provider", "api_key_env": None})
    doc = orjson.loads(body)
    headers = [(b"Host", b"a"), (b"Authorization", b"Bearer client"), (b"Content-Type", b"application/json"),
               (b"Content-Length", b"%d" % len(body))]
    t0 = time.perf_counter()
    for _ in range(n):
        ex = Exchange()
        ex.headers = list(headers)
        ai_body.prompt_chars(doc)
        provider.apply(ex, doc, doc["model"])
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--body-bytes", type=int, default=2048)
    args = ap.parse_args()
    body = body_of(args.body_bytes)
    with_model, plain = asyncio.run(run(args.requests, body))
    print(f"{len(body)} B body: Model() routing {with_model:.2f} µs, PathPrefix {plain:.2f} µs, "
          f"added {with_model - plain:.2f} µs per request")
    print(f"a provider target: estimate + model rewrite + key {provider_cost(args.requests, body, 'openai'):.2f} µs, "
          f"estimate + Anthropic translation + key {provider_cost(args.requests, body, 'anthropic'):.2f} µs")


if __name__ == "__main__":
    main()
