"""The entries of one ``semantic-cache`` instance in one worker: an exact map and a vector index per scope.

A *scope* is everything a cached answer must share with the request it answers besides the messages: the
service, the tenant, the model and the sampling parameters and tools (``semantic_cache.py`` hashes them). An
entry's exact key is the scope plus the normalized messages, so an exact hit never crosses a scope. The
semantic layer keeps one ``VectorIndex`` per scope: the scope *selects* the index and the nearest-neighbour
search then runs over every live entry of it (a request hash is never a pre-filter, the LiteLLM#29086 bug).

Invariants: at most ``max_entries`` entries (the least recently used one goes first); an entry older than
``ttl`` is never returned and is dropped when met; an entry is in its scope's index exactly when it was
stored with a vector; rows of an index are dense (a removed row is filled with the last one).

The search runs on the worker's event loop, one matrix-vector product over the scope's rows (measured by
``loadtest/semantic_cache.py``). numpy's BLAS is kept to one thread unless the environment says otherwise: a
node runs one worker per core, and BLAS threads in every worker would only fight over the same cores. This
module is the first to import numpy in a worker (``semantic_cache.py`` imports it before ``embeddings.py``).
"""

from __future__ import annotations

import os
from collections import OrderedDict

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402 — after the BLAS thread setting, which numpy reads when it loads


class Entry:
    """``body``: the chat completion as JSON; ``tokens``: its ``usage.total_tokens`` (0 when unknown)."""

    __slots__ = ("body", "expires", "scope", "tokens")

    def __init__(self, body: bytes, tokens: int, scope: bytes, expires: float) -> None:
        self.body = body
        self.tokens = tokens
        self.scope = scope
        self.expires = expires


class VectorIndex:
    """Unit vectors of one scope, one row each; cosine similarity is a dot product."""

    __slots__ = ("keys", "matrix", "rows")

    def __init__(self, dim: int) -> None:
        self.matrix = np.empty((8, dim), dtype=np.float32)
        self.keys: list[bytes] = []
        self.rows: dict[bytes, int] = {}

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def add(self, key: bytes, vec: np.ndarray) -> None:
        n = len(self.keys)
        if n == self.matrix.shape[0]:
            grown = np.empty((2 * n, self.dim), dtype=np.float32)
            grown[:n] = self.matrix
            self.matrix = grown
        self.matrix[n] = vec
        self.keys.append(key)
        self.rows[key] = n

    def remove(self, key: bytes) -> None:
        row = self.rows.pop(key)
        last = len(self.keys) - 1
        if row != last:
            moved = self.keys[last]
            self.matrix[row] = self.matrix[last]
            self.keys[row] = moved
            self.rows[moved] = row
        self.keys.pop()

    def ranked(self, vec: np.ndarray, threshold: float) -> list[tuple[bytes, float]]:
        """(key, similarity) of every row at or above ``threshold``, most similar first."""
        scores = self.matrix[: len(self.keys)] @ vec
        above = np.flatnonzero(scores >= threshold)
        order = above[np.argsort(-scores[above], kind="stable")]
        return [(self.keys[i], float(scores[i])) for i in order]

    def __len__(self) -> int:
        return len(self.keys)


class CacheStore:
    def __init__(self, max_entries: int, ttl: float) -> None:
        self.max_entries = max_entries
        self.ttl = ttl
        self.entries: OrderedDict[bytes, Entry] = OrderedDict()
        self.indexes: dict[bytes, VectorIndex] = {}

    def get(self, key: bytes, now: float) -> Entry | None:
        """The live entry stored under ``key`` (made the most recently used), or None."""
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry.expires <= now:
            self._drop(key)
            return None
        self.entries.move_to_end(key)
        return entry

    def nearest(self, scope: bytes, vec: np.ndarray, threshold: float,
                now: float) -> tuple[Entry, float] | None:
        """The most similar live entry of ``scope`` at or above ``threshold``, and its similarity."""
        index = self.indexes.get(scope)
        if index is None or index.dim != vec.shape[0]:
            return None
        found = None
        expired = []
        for key, score in index.ranked(vec, threshold):
            entry = self.entries[key]
            if entry.expires > now:
                self.entries.move_to_end(key)
                found = entry, score
                break
            expired.append(key)
        for key in expired:
            self._drop(key)
        return found

    def put(self, key: bytes, scope: bytes, body: bytes, tokens: int, vec: np.ndarray | None,
            now: float) -> None:
        if key in self.entries:
            self._drop(key)
        self.entries[key] = Entry(body, tokens, scope, now + self.ttl)
        if vec is not None:
            index = self.indexes.get(scope)
            if index is None:
                index = self.indexes[scope] = VectorIndex(vec.shape[0])
            if index.dim == vec.shape[0]:
                index.add(key, vec)
        while len(self.entries) > self.max_entries:
            self._drop(next(iter(self.entries)))

    def _drop(self, key: bytes) -> None:
        entry = self.entries.pop(key)
        index = self.indexes.get(entry.scope)
        if index is not None and key in index.rows:
            index.remove(key)
            if not len(index):
                del self.indexes[entry.scope]

    def __len__(self) -> int:
        return len(self.entries)
