"""The etcd v3 provider: routers, services and middlewares from the keys under ``root_key`` (kv.py's layout).

A read lists the prefix and keeps its revision; the watch starts at the next revision, so no change between the
read and the watch is lost. When etcd answers that the watch's revision was compacted (its "410"), the provider
reads everything again and watches from the compaction on (traefik/traefik#566: a closed watch must not mean no
more updates). A watch that ends for any other reason is a lost source: reconnect with backoff, then relist.
"""

from __future__ import annotations

from typing import Any

import aetcd

from ...shared.config.schema import parse_address
from .kv import Partial, decode
from .provider import Provider


class EtcdProvider(Provider):
    name = "etcd"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client: aetcd.Client | None = None
        self.revision = 0

    @property
    def _prefix(self) -> bytes:
        return (self.settings["root_key"].rstrip("/") + "/").encode()

    async def connect(self) -> None:
        host, port = parse_address(self.settings["endpoint"])
        self.client = aetcd.Client(host, port, username=self.settings["username"],
                                   password=self.settings["password"], timeout=self.settings["timeout"])
        await self.client.connect()

    async def read(self) -> Partial:
        assert self.client is not None
        listing = await self.client.get_prefix(self._prefix)
        self.revision = listing.header.revision
        pairs = {kv.key.decode(errors="replace"): kv.value.decode(errors="replace") for kv in listing}
        return decode(pairs, self.settings["root_key"], self.name)

    async def watch(self) -> None:
        assert self.client is not None
        start = self.revision + 1
        while True:
            try:
                async for _event in await self.client.watch_prefix(self._prefix, start_revision=start):
                    self.changed()
                return
            except aetcd.exceptions.RevisionCompactedError as e:
                self.changed()                  # what the compacted revisions said comes from a relist
                start = e.compacted_revision

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None
