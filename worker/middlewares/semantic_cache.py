"""``semantic-cache``: answer repeated (or, with embeddings, similar) chat completions from a cache.

Which requests: a POST chat completion (``messages``) of a tenant (some ``tenant_headers`` value: the client's
own key, ``Authorization`` / ``X-Api-Key`` / ``Api-Key`` by default, so list the cache before ``ai-provider``,
which replaces them) with a ``temperature`` at most ``max_temperature`` (absent counts as 1, OpenAI's
default). Anything else passes untouched with ``X-Cache: BYPASS``.

Keys: the *scope* hashes the service, the tenant and every body field except the messages and those that do
not change an answer (``stream``, ``stream_options``, ``user``, ``metadata``, ``store``), so ``model``,
sampling parameters and ``tools`` are in it; the exact key adds the messages with whitespace runs collapsed.
Entries are never shared across scopes, hence never across tenants, models or services.

Lookup, in the request phase: the exact key, then (with ``embeddings``) the request's conversation is embedded
(``_support/embeddings.py``, awaited with a timeout) and the most similar live entry of the same scope at or
above ``similarity_threshold`` answers (``_support/cache_store.py``; the scope selects the index, the search
covers all of it). An embedding failure is counted and the request goes on exact-only. A hit is answered by
the gateway (``X-Cache: HIT`` or ``SEMANTIC <similarity>``) and never reaches the upstream; a streaming request
gets the stored completion replayed as SSE (``_support/completion_stream.py``). A miss (``X-Cache: MISS``) is
sent without ``Accept-Encoding``, and a 200 answer of at most ``max_response_bytes``, JSON or a complete SSE
stream, is stored with its vector when the response ends (the body streams to the client meanwhile).

The cache is per worker (an in-process store per middleware instance): entries are a few KiB of JSON and a
vector, a hit costs no cross-process round trip and holds no lock, and a numpy matrix per scope makes the
nearest-neighbour search one matrix-vector product. The price is that each worker fills its own cache (N
workers miss up to N times) and memory is ``workers × max_entries`` entries. Entries survive a reload that
leaves the middleware's config unchanged.
"""

from __future__ import annotations

import hashlib
import os
import time
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson

from ...shared import log as gwlog
from ..chain import Middleware, Reply, header_value, remove_headers
from ._support.ai_body import inspect
from ._support.cache_store import CacheStore, Entry
from ._support.completion_stream import assemble, replay
from ._support.embeddings import Embedder
from ._support.prompt_text import content_text

if TYPE_CHECKING:
    import numpy as np

    from ..chain import BodyFilter
    from ..exchange import Exchange
    from ..process import Worker

log = gwlog.get("worker.ai")

NOT_IN_KEY = frozenset(("messages", "stream", "stream_options", "user", "metadata", "store"))
JSON = b"application/json"
SSE = b"text/event-stream"


class Lookup:
    """A missed request's keys and vector, kept on the exchange until its answer can be stored."""

    __slots__ = ("key", "scope", "vec")

    def __init__(self, key: bytes, scope: bytes, vec: np.ndarray | None) -> None:
        self.key, self.scope, self.vec = key, scope, vec


BYPASS = Lookup(b"", b"", None)


class ResponseTap:
    """A body filter that passes every byte on unchanged and hands the whole body (if at most ``limit``
    bytes) to ``complete`` when the response ended."""

    __slots__ = ("buf", "complete", "inner", "limit")

    def __init__(self, inner: BodyFilter | None, limit: int, complete: Any) -> None:
        self.inner = inner
        self.limit = limit
        self.complete = complete
        self.buf: bytearray | None = bytearray()

    def feed(self, data: bytes) -> bytes:
        buf = self.buf
        if buf is not None:
            if len(buf) + len(data) > self.limit:
                self.buf = None
            else:
                buf += data
        return self.inner.feed(data) if self.inner is not None else data

    def finish(self) -> bytes:
        if self.buf is not None:
            try:
                self.complete(bytes(self.buf))
            except Exception:  # noqa: BLE001 — storing must never break the response being sent
                log.exception("semantic-cache could not store an answer")
        return self.inner.finish() if self.inner is not None else b""


def _collapse(text: str) -> str:
    return " ".join(text.split())


def normalized(messages: list[Any]) -> list[Any]:
    """``messages`` with the whitespace of every text collapsed (what the exact key hashes)."""
    out = []
    for m in messages:
        if isinstance(m, dict):
            content = m.get("content")
            if isinstance(content, str):
                m = {**m, "content": _collapse(content)}
            elif isinstance(content, list):
                m = {**m, "content": [{**p, "text": _collapse(p["text"])}
                                      if isinstance(p, dict) and isinstance(p.get("text"), str) else p
                                      for p in content]}
        out.append(m)
    return out


def conversation(messages: list[Any]) -> str:
    """The text embedded for the semantic layer: ``role: text`` per message."""
    return "\n".join(f"{m.get('role', '')}: {_collapse(content_text(m.get('content')))}"
                     for m in messages if isinstance(m, dict))


def _digest(*parts: bytes) -> bytes:
    return hashlib.blake2b(b"\0".join(parts), digest_size=16).digest()


class SemanticCache(Middleware):
    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        super().__init__(name, params, worker)
        self.store = CacheStore(params["max_entries"], params["ttl"])
        self.max_temperature = params["max_temperature"]
        self.threshold = params["similarity_threshold"]
        self.tenant_headers = frozenset(h.lower().encode() for h in params["tenant_headers"])
        self.max_response = params["max_response_bytes"]
        self.header = params["cache_header"].encode()
        self.header_l = frozenset((self.header.lower(),))
        emb = params["embeddings"]
        self.embedder = None if emb is None else Embedder(
            emb, emb["api_key"] or os.environ.get(emb["api_key_env"] or "") or None)

    def _count(self, name: str, n: int = 1) -> None:
        if self.worker is not None:
            self.worker.plane.ai_add(name, n)

    def on_request(self, ex: Exchange) -> Any:
        if ex.method != b"POST" or not (ex.req_has_body or ex.pending):
            return self._bypass(ex)
        return self.lookup(ex)

    def _bypass(self, ex: Exchange) -> None:
        ex.ai_cache = BYPASS
        self._count("cache_bypassed")

    def keys(self, ex: Exchange, doc: Any, model: str | None) -> tuple[bytes, bytes] | None:
        """(scope, exact key) of a cacheable request, else None."""
        if not isinstance(doc, dict) or model is None or not isinstance(doc.get("messages"), list):
            return None
        temperature = doc.get("temperature", 1.0)
        if temperature.__class__ not in (int, float) or temperature > self.max_temperature:
            return None
        tenant = [v for n, v in ex.headers if n.lower() in self.tenant_headers]
        if not tenant:
            return None
        service = ex.service.name if ex.service is not None else ""
        params = {k: v for k, v in doc.items() if k not in NOT_IN_KEY}
        try:
            scope = _digest(service.encode(), *tenant, orjson.dumps(params, option=orjson.OPT_SORT_KEYS))
            return scope, _digest(scope, orjson.dumps(normalized(doc["messages"]), option=orjson.OPT_SORT_KEYS))
        except orjson.JSONEncodeError:       # nested past orjson's depth: not worth caching
            return None

    async def lookup(self, ex: Exchange) -> Reply | None:
        got = await inspect(ex)
        if got.__class__ is Reply:
            return got  # type: ignore[return-value]
        doc = got.doc  # type: ignore[union-attr]
        keys = self.keys(ex, doc, got.model)  # type: ignore[union-attr]
        if keys is None:
            return self._bypass(ex)
        scope, key = keys
        entry = self.store.get(key, time.monotonic())
        if entry is not None:
            self._count("cache_hits_exact")
            return self.answer(doc, entry, b"HIT")
        vec = None
        if self.embedder is not None:
            vec = await self.embedder.embed(conversation(doc["messages"]))
            if vec is None:
                self._count("cache_embedding_failures")
            else:
                found = self.store.nearest(scope, vec, self.threshold, time.monotonic())
                if found is not None:
                    self._count("cache_hits_semantic")
                    return self.answer(doc, found[0], b"SEMANTIC %.4f" % found[1])
        self._count("cache_misses")
        ex.ai_cache = Lookup(key, scope, vec)
        remove_headers(ex.headers, frozenset((b"accept-encoding",)))   # store what a client can always read
        return None

    def answer(self, doc: dict[str, Any], entry: Entry, label: bytes) -> Reply:
        self._count("cache_tokens_saved", entry.tokens)
        if doc.get("stream") is True:
            options = doc.get("stream_options")
            usage = isinstance(options, dict) and options.get("include_usage") is True
            return Reply(200, replay(orjson.loads(entry.body), usage),
                         [(b"Content-Type", SSE), (b"Cache-Control", b"no-cache"), (self.header, label)])
        return Reply(200, entry.body, [(b"Content-Type", JSON), (self.header, label)])

    def on_response(self, ex: Exchange, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        lookup = ex.ai_cache
        if lookup is None:
            return
        ex.ai_cache = None
        remove_headers(headers, self.header_l)            # an upstream's own X-Cache would contradict ours
        headers.append((self.header, b"BYPASS" if lookup is BYPASS else b"MISS"))
        if lookup is BYPASS or status != 200 or ex.is_head:
            return
        if header_value(headers, b"content-encoding") not in (None, b"identity"):
            return
        ctype = header_value(headers, b"content-type") or b""
        if ctype.startswith(SSE):
            ex.filter = ResponseTap(ex.filter, self.max_response, partial(self._store, lookup, True))
        elif ctype.startswith(JSON):
            ex.filter = ResponseTap(ex.filter, self.max_response, partial(self._store, lookup, False))

    def _store(self, lookup: Lookup, sse: bool, body: bytes) -> None:
        if sse:
            doc = assemble(body)
            if doc is None:
                return
            body = orjson.dumps(doc)
        else:
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                return
            if not isinstance(doc, dict) or not isinstance(doc.get("choices"), list):
                return
        usage = doc.get("usage")
        tokens = usage.get("total_tokens") if isinstance(usage, dict) else None
        self.store.put(lookup.key, lookup.scope, body, tokens if tokens.__class__ is int else 0, lookup.vec,
                       time.monotonic())

    def close(self) -> None:
        if self.embedder is not None:
            self.embedder.close()
