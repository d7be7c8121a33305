"""The semantic-cache's store and SSE conversion (``worker/middlewares/_support/cache_store.py``,
``completion_stream.py``): bounds, expiry, scope isolation and the nearest-neighbour search over a whole
scope — the invariants the e2e tests cannot reach in reasonable time."""

from __future__ import annotations

import numpy as np
import orjson
from a3s_gateway.worker.middlewares._support.cache_store import CacheStore
from a3s_gateway.worker.middlewares._support.completion_stream import assemble, replay


def unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_the_least_recently_used_entry_goes_first_and_leaves_its_index() -> None:
    store = CacheStore(max_entries=2, ttl=60)
    store.put(b"a", b"s", b"A", 1, unit(1, 0), now=0)
    store.put(b"b", b"s", b"B", 1, unit(0, 1), now=0)
    assert store.get(b"a", now=1) is not None          # a is now the most recently used
    store.put(b"c", b"s", b"C", 1, unit(1, 1), now=1)
    assert [store.get(k, now=2) is not None for k in (b"a", b"b", b"c")] == [True, False, True]
    assert store.nearest(b"s", unit(0, 1), 0.99, now=2) is None      # b's vector went with it
    assert len(store.indexes[b"s"]) == 2


def test_expired_entries_are_never_returned_and_the_next_best_answers() -> None:
    store = CacheStore(max_entries=10, ttl=10)
    store.put(b"old", b"s", b"OLD", 1, unit(1, 0), now=0)
    store.put(b"new", b"s", b"NEW", 1, unit(1, 0.2), now=5)
    found = store.nearest(b"s", unit(1, 0), 0.9, now=12)             # old is the closer one, but expired
    assert found is not None and found[0].body == b"NEW"
    assert store.get(b"old", now=12) is None and len(store) == 1
    assert store.nearest(b"s", unit(1, 0), 0.9, now=20) is None


def test_the_scope_selects_the_index_and_the_search_covers_all_of_it() -> None:
    store = CacheStore(max_entries=5000, ttl=60)
    rng = np.random.default_rng(1)
    for i in range(4000):
        store.put(b"k%d" % i, b"tenant-a", b"%d" % i, 1, unit(*rng.normal(size=8)), now=0)
    target = unit(*rng.normal(size=8))
    store.put(b"far-last", b"tenant-a", b"LAST", 1, target, now=0)   # the last one stored is the best
    store.put(b"b", b"tenant-b", b"B", 1, target, now=0)
    found = store.nearest(b"tenant-a", target, 0.5, now=1)
    assert found is not None and found[0].body == b"LAST" and found[1] > 0.999
    assert store.nearest(b"tenant-c", target, 0.0, now=1) is None


def test_a_stream_assembles_into_the_completion_it_replays_as() -> None:
    doc = {"id": "c9", "object": "chat.completion", "created": 3, "model": "m",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there"},
                        "finish_reason": "stop"}], "usage": {"total_tokens": 7}}
    sse = replay(doc, include_usage=True)
    assert sse.endswith(b"data: [DONE]\n\n")
    assert assemble(sse) == doc
    assert b'"usage"' not in replay(doc, include_usage=False)
    assert assemble(sse[: sse.rindex(b"data: [DONE]")]) is None         # cut short: not stored
    tool = b'data: ' + orjson.dumps({"choices": [{"index": 0, "delta": {"tool_calls": []}}]}) + b"\n\ndata: [DONE]\n\n"
    assert assemble(tool) is None
