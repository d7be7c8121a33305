"""Helpers of the AI-extension e2e tests: the fake model backend process."""

from __future__ import annotations

import httpx
from mw_support import Process


class AiBackend(Process):
    def __init__(self, name: str, health: str = "ready") -> None:
        super().__init__("ai_backend.py", "--name", name, "--health", health)
        self.name = name

    def seen(self) -> int:
        return httpx.get(self.url + "/_seen").json()["seen"]

    def seen_path(self, path: str) -> int:
        """How many requests to ``path`` arrived."""
        return httpx.get(self.url + "/_seen").json()["paths"].get(path, 0)

    def set_health(self, state: str) -> None:
        httpx.get(self.url + "/_set", params={"health": state})

    def set_embeddings(self, state: str) -> None:
        """``ok``, ``fail`` (500) or ``slow`` (5 s) answers from ``/v1/embeddings``."""
        httpx.get(self.url + "/_set", params={"embeddings": state})

    def script(self, mode: str, **params: object) -> None:
        """How the chat endpoints answer from now on (``ai_backend.py``: ok, 429, 500, slow, context, bad, cut)."""
        httpx.get(self.url + "/_set", params={"mode": mode, **{k: str(v) for k, v in params.items()}})

    def last(self) -> dict:
        """The last chat request: path, headers, JSON body."""
        return httpx.get(self.url + "/_last").json()
