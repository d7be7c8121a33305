"""More than one gateway node: the nodes share their load through Redis, and the holder of a Redis lease decides.

With ``[serving] redis_url`` set, every node's controller, once a second, publishes its own per-revision
concurrency (its 1 s bucket) and ready instances with ``publish``, and asks ``is_leader``. The leader reads the
cluster's ``total`` (every node's latest values, summed, and how many nodes sent them) into its decider and
publishes each decision; the others read the leader's ``decision`` and follow it. Nothing here is a protocol of
our own: a value per node with an expiry, a ``SET NX PX`` lease renewed by compare-and-extend, and plain keys for
decisions.

Keys (under ``prefix``, default ``a3s:serving``):

- ``<prefix>:load:<revision>`` — a hash, node → ``"<concurrency> <ready> <expiry ms>"``; a field older than its
  expiry (``load_ttl``, default 3 s, by Redis's own clock so the nodes' clocks do not matter) is ignored and
  pruned, so a node that stops publishing drops out of the sum within ``load_ttl``;
- ``<prefix>:leader`` — the lease: the holder's node id, ``PX lease`` (default 6 s); the holder renews it on
  every ``is_leader`` with a Lua compare-and-extend, so only the holder can extend it, and another node's
  ``SET NX`` takes it once it lapses;
- ``<prefix>:decision:<revision>`` — ``"<desired> <nodes>"``: the leader's cluster-wide count and the nodes it was
  decided for, expiring after ``decision_ttl`` (default 30 s) so a follower never follows a dead leader's stale
  wish for long (``decision`` is None then).

Invariants: at most one node believes it leads at any time, provided each node calls ``is_leader`` more often
than ``lease`` (a node that loses the lease learns it on its next call); ``total`` never counts a node's value
past its expiry. A Redis that cannot be reached makes ``is_leader`` False and the other calls raise
``redis.exceptions.RedisError``: the caller decides alone (for its own node) and says so.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

# The node's value with its expiry in Redis time; the hash itself lives as long as its newest field.
_PUBLISH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. (now + tonumber(ARGV[4])))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""
# Sum the fields that have not expired, pruning the rest: "<concurrency> <ready> <nodes>", a string because Lua
# numbers come back truncated.
_TOTAL = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local fields = redis.call('HGETALL', KEYS[1])
local sum, ready, nodes = 0, 0, 0
for i = 1, #fields, 2 do
  local value, up, expiry = string.match(fields[i + 1], '^(%S+) (%d+) (%d+)$')
  if value and tonumber(expiry) > now then
    sum, ready, nodes = sum + tonumber(value), ready + tonumber(up), nodes + 1
  else
    redis.call('HDEL', KEYS[1], fields[i])
  end
end
return string.format('%.17g %d %d', sum, ready, nodes)
"""
# Extend the lease only while this node still holds it.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


def node_id() -> str:
    """A name for this node that no other node (nor this one after a restart) shares."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class Load:
    """The cluster's view of one revision: every live node's latest values, summed."""

    concurrency: float
    ready: int          # instances ready, summed over the nodes (each node counts the instances it sees)
    nodes: int          # the nodes that published


class ServingCluster:
    """One node's view of the serving cluster in Redis."""

    def __init__(self, redis_url: str, node: str | None = None, prefix: str = "a3s:serving", lease: float = 6.0,
                 load_ttl: float = 3.0, decision_ttl: float = 30.0, timeout: float = 2.0) -> None:
        self.redis = aioredis.from_url(redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self.node = node or node_id()
        self.prefix = prefix
        self.lease_ms = int(lease * 1000)
        self.load_ttl_ms = int(load_ttl * 1000)
        self.decision_ttl_ms = int(decision_ttl * 1000)
        self._publish = self.redis.register_script(_PUBLISH)
        self._total = self.redis.register_script(_TOTAL)
        self._renew = self.redis.register_script(_RENEW)
        self.leading = False

    async def publish(self, revision: str, concurrency: float, ready: int = 0) -> None:
        """This node's concurrency for ``revision`` over the last second, and the instances it has ready."""
        await self._publish(keys=[f"{self.prefix}:load:{revision}"],
                            args=[self.node, repr(float(concurrency)), int(ready), self.load_ttl_ms])

    async def total(self, revision: str) -> Load:
        """The cluster's load for ``revision``: every live node's latest values, summed."""
        concurrency, ready, nodes = (await self._total(keys=[f"{self.prefix}:load:{revision}"])).split()
        return Load(float(concurrency), int(ready), int(nodes))

    async def is_leader(self) -> bool:
        """Renew the lease if this node holds it, else try to take it; False when Redis cannot say."""
        key = f"{self.prefix}:leader"
        try:
            held = bool(await self._renew(keys=[key], args=[self.node, self.lease_ms]))
            if not held:
                held = bool(await self.redis.set(key, self.node, nx=True, px=self.lease_ms))
        except RedisError:
            held = False
        self.leading = held
        return held

    async def leader(self) -> str | None:
        """Who holds the lease now (for ``/api/serving``)."""
        value = await self.redis.get(f"{self.prefix}:leader")
        return value.decode() if value else None

    async def publish_decision(self, revision: str, desired: int, nodes: int = 1) -> None:
        """The leader's cluster-wide count for ``revision``, decided for ``nodes`` nodes."""
        await self.redis.set(f"{self.prefix}:decision:{revision}", f"{desired} {nodes}", px=self.decision_ttl_ms)

    async def decision(self, revision: str) -> tuple[int, int] | None:
        """The leader's last decision for ``revision`` (desired, nodes), or None when there is none fresh."""
        value = await self.redis.get(f"{self.prefix}:decision:{revision}")
        if value is None:
            return None
        desired, nodes = value.split()
        return int(desired), int(nodes)

    async def resign(self) -> None:
        """Give the lease up at once (a stopping node), so another takes over without waiting for it to lapse."""
        try:
            await self.redis.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) "
                                  "end return 0", 1, f"{self.prefix}:leader", self.node)
        except RedisError:
            pass
        self.leading = False

    async def close(self) -> None:
        await self.redis.aclose()
