"""What a ``semantic-cache`` lookup costs at 10 000 entries, without the embedding call itself (which is the
embedder's latency, bounded by ``embeddings.timeout``).

Measures, per lookup: the keys of a ~2 KiB chat completion body (scope and exact key: filtering, sorting,
serializing, hashing), an exact hit in the store, and a semantic search over one scope holding every entry
(the worst case: one tenant and one model) for embedding widths 256 and 1536 (OpenAI's text-embedding-3-small).

    python loadtest/semantic_cache.py [--entries N] [--lookups N]
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import numpy as np
import orjson
from a3s_gateway.worker.middlewares._support.cache_store import CacheStore
from a3s_gateway.worker.middlewares.semantic_cache import SemanticCache

PARAMS = {"ttl": 3600.0, "max_entries": 10**6, "max_temperature": 0.0, "similarity_threshold": 0.95,
          "tenant_headers": ["Authorization"], "max_response_bytes": 262144, "cache_header": "X-Cache",
          "embeddings": None}


def per_call_us(fn, n: int, repeat: int = 40) -> tuple[float, float]:
    """(best, median) µs per call over ``repeat`` short batches of ``n`` calls: the best is what the code costs
    on an idle core (short batches find one on a loaded machine), the median what this machine gave."""
    batches = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        batches.append((time.perf_counter() - t0) / n * 1e6)
    batches.sort()
    return batches[0], batches[len(batches) // 2]


def shown(timing: tuple[float, float]) -> str:
    return f"{timing[0]:.2f} µs (median {timing[1]:.2f})"


def measure(store: CacheStore, query: np.ndarray, lookups: int) -> str:
    exact = per_call_us(lambda: store.get(b"%016d" % 7, 1.0), lookups)
    hit = per_call_us(lambda: store.nearest(b"scope", query, 0.95, 1.0), lookups)
    miss = per_call_us(lambda: store.nearest(b"scope", -query, 0.95, 1.0), lookups)
    return f"exact hit {shown(exact)}, semantic hit {shown(hit)}, semantic miss {shown(miss)}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--lookups", type=int, default=20, help="calls per timed batch (40 batches)")
    args = ap.parse_args()
    cache = SemanticCache("bench", PARAMS, None)
    doc = {"model": "gpt-4o", "temperature": 0, "max_tokens": 256,
           "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "x" * 1900}]}
    ex = SimpleNamespace(headers=[(b"Authorization", b"Bearer sk-tenant")], service=SimpleNamespace(name="llm"))
    keys = per_call_us(lambda: cache.keys(ex, doc, "gpt-4o"), args.lookups)
    print(f"{len(orjson.dumps(doc))} B body: scope and exact key {shown(keys)}")
    rng = np.random.default_rng(0)
    for dim in (256, 1536):
        store = CacheStore(args.entries, 3600.0)
        vecs = rng.normal(size=(args.entries, dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        for i in range(args.entries):
            store.put(b"%016d" % i, b"scope", b"{}", 30, vecs[i], now=0.0)
        result = measure(store, vecs[args.entries // 2], args.lookups)
        print(f"{args.entries} entries in one scope, dim {dim}: {result}")


if __name__ == "__main__":
    main()
