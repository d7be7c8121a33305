"""The Consul KV provider: routers, services and middlewares from the keys under ``root_key`` (kv.py's layout).

Changes are found with Consul's blocking queries: ``GET /v1/kv/<root>/?recurse&index=<X-Consul-Index>&wait=``
returns when the prefix's index moves past the one given (or when ``wait`` ends, with the same index). A moved
index marks the provider dirty, and the settled read is one recursive list of the whole prefix — one list per
burst of changes, never one read per key (traefik/traefik#4368). Values are base64 (null for an empty value).
An index that goes backwards (a restored snapshot, a new cluster) restarts the blocking from 0, as Consul's docs
ask. ``token`` is sent as ``X-Consul-Token``.
"""

from __future__ import annotations

import base64
from typing import Any

import aiohttp

from .kv import Partial, decode
from .provider import Provider


class ConsulProvider(Provider):
    name = "consul"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session: aiohttp.ClientSession | None = None
        self.index = 0

    @property
    def _path(self) -> str:
        return "/v1/kv/" + self.settings["root_key"].strip("/") + "/"

    async def connect(self) -> None:
        headers = {"X-Consul-Token": self.settings["token"]} if self.settings["token"] else {}
        self.session = aiohttp.ClientSession(base_url=self.settings["address"].rstrip("/"), headers=headers)
        self.index = 0

    async def _list(self, index: int = 0) -> tuple[int, list[dict[str, Any]]]:
        """The prefix's entries and index; with ``index``, a blocking query."""
        assert self.session is not None
        params = {"recurse": "true"}
        wait = self.settings["wait"]
        if index:
            params.update(index=str(index), wait=f"{wait:g}s")
        timeout = aiohttp.ClientTimeout(total=(wait + 15 if index else 0) + self.settings["timeout"])
        async with self.session.get(self._path, params=params, timeout=timeout) as r:
            if r.status not in (200, 404):          # 404: nothing under the prefix yet
                raise ConnectionError(f"consul answered {r.status}: {(await r.text())[:200]}")
            entries = await r.json() if r.status == 200 else []
            return int(r.headers.get("X-Consul-Index", "0")), entries

    async def read(self) -> Partial:
        index, entries = await self._list()
        self.index = max(index, 1)
        pairs = {e["Key"]: base64.b64decode(e["Value"]).decode(errors="replace") if e.get("Value") else ""
                 for e in entries}
        return decode(pairs, self.settings["root_key"], self.name)

    async def watch(self) -> None:
        index = self.index
        while True:
            new, _entries = await self._list(index)
            if new != index:
                self.changed()
            index = max(new, 1) if new >= index else 0      # backwards: one plain query, then block from there

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None
