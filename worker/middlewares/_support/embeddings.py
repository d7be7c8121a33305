"""A client of an OpenAI-compatible ``/v1/embeddings`` endpoint, for ``semantic-cache``.

``embed(text)`` POSTs ``{"model", "input"}`` and returns the first vector, L2-normalized as float32, or None
when the endpoint fails, times out, or answers something that is not a non-empty list of finite numbers:
the caller then goes on without a vector (exact matching only), so a slow or broken embedder costs at most
``timeout`` per request and never an error to the client. The call is awaited on the worker's event loop
(aiohttp, one pooled session per middleware instance, opened on first use): other requests go on meanwhile.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import numpy as np
import orjson

from .lazy_client import LazyClient

POOL_SIZE = 64


class Embedder:
    __slots__ = ("headers", "model", "session", "timeout", "url")

    def __init__(self, params: dict[str, Any], api_key: str | None) -> None:
        self.url = params["url"]
        self.model = params["model"]
        self.timeout = params["timeout"]
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.session = LazyClient(self._open, aiohttp.ClientSession.close)

    def _open(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=POOL_SIZE),
                                     timeout=aiohttp.ClientTimeout(total=self.timeout))

    async def embed(self, text: str) -> np.ndarray | None:
        body = orjson.dumps({"model": self.model, "input": text})
        try:
            async with self.session.get().post(self.url, data=body, headers=self.headers) as resp:
                if resp.status != 200:
                    return None
                doc = orjson.loads(await resp.read())
        except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError, OSError):
            return None
        return unit_vector(doc)

    def close(self) -> None:
        self.session.close()


def unit_vector(doc: Any) -> np.ndarray | None:
    """``data[0].embedding`` of an embeddings answer, normalized to length 1 (None if unusable)."""
    try:
        vec = np.asarray(doc["data"][0]["embedding"], dtype=np.float32)
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    if vec.ndim != 1 or not vec.size or not np.isfinite(vec).all():
        return None
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm > 0 else None
