"""The Redis provider: routers, services and middlewares from plain string keys under ``root_key`` (kv.py's layout).

Changes arrive as keyspace notifications (``PSUBSCRIBE __keyspace@<db>__:<root>/*``), subscribed before the first
read so no change falls between. Notifications need ``notify-keyspace-events`` to hold ``K`` and the string and
generic classes (``$g``, or ``A``): the provider reads the setting and adds what is missing with ``CONFIG SET``.
Managed Redis (ElastiCache, Memorystore) refuses ``CONFIG``; then the provider says so in ``/api/providers``
(``warning``) and reads everything every ``poll_interval`` instead — it never silently stops updating
(traefik/traefik#8196). A read is ``SCAN MATCH <root>/*`` plus ``MGET`` in batches: one pass per change burst,
not one read per key.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from .kv import Partial, decode
from .provider import Provider

NOTIFY = "notify-keyspace-events"
BATCH = 500


def notifications_enough(flags: str) -> bool:
    """Whether ``notify-keyspace-events`` reports sets, deletes and expiries of string keys by key name."""
    return "K" in flags and ("A" in flags or all(c in flags for c in "$gx"))


class RedisProvider(Provider):
    name = "redis"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client: aioredis.Redis | None = None
        self.pubsub: Any = None

    @property
    def _pattern(self) -> str:
        return re.sub(r"([*?\[\]\\])", r"\\\1", self.settings["root_key"].rstrip("/")) + "/*"

    async def connect(self) -> None:
        # a value that is not UTF-8 becomes a string with U+FFFD (reported by validation), not a broken provider;
        # the health check PINGs an idle subscription, so a silently dead connection is noticed too
        self.client = aioredis.from_url(self.settings["url"], decode_responses=True, encoding_errors="replace",
                                        socket_connect_timeout=5, health_check_interval=15)
        await self.client.ping()
        self.pubsub = None
        refused = await self._enable_notifications()
        if refused:
            self.warning = (f"keyspace notifications are unavailable ({refused}): polling every "
                            f"{self.settings['poll_interval']:g}s instead; set {NOTIFY} to 'K$gx' on the server "
                            "for immediate updates")
            return
        self.warning = None
        db = self.client.connection_pool.connection_kwargs.get("db", 0)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        await self.pubsub.psubscribe(f"__keyspace@{db}__:{self._pattern}")

    async def _enable_notifications(self) -> str | None:
        """None when notifications are on (turned on if need be), else why they cannot be."""
        assert self.client is not None
        try:
            flags = (await self.client.config_get(NOTIFY)).get(NOTIFY, "")
            if not notifications_enough(flags):
                await self.client.config_set(NOTIFY, flags + "".join(c for c in "K$gx" if c not in flags))
        except ResponseError as e:
            return f"CONFIG refused: {e}"
        return None

    async def read(self) -> Partial:
        assert self.client is not None
        keys = [key async for key in self.client.scan_iter(match=self._pattern, count=BATCH)]
        pairs: dict[str, str] = {}
        for i in range(0, len(keys), BATCH):
            batch = keys[i:i + BATCH]
            for key, value in zip(batch, await self.client.mget(batch)):
                if value is not None:           # deleted since the scan, or not a string
                    pairs[key] = value
        return decode(pairs, self.settings["root_key"], self.name)

    async def watch(self) -> None:
        if self.pubsub is None:
            while True:
                await asyncio.sleep(self.settings["poll_interval"])
                self.changed()
        async for message in self.pubsub.listen():
            if message["type"] == "pmessage":
                self.changed()

    async def close(self) -> None:
        if self.pubsub is not None:
            await self.pubsub.aclose()
            self.pubsub = None
        if self.client is not None:
            await self.client.aclose()
            self.client = None
