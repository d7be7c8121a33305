"""``rate-limit-redis``: one token bucket shared by every gateway node, kept in Redis.

A Lua script (run with EVALSHA, reloaded by redis-py on NOSCRIPT) refills and takes a token atomically, using
Redis ``TIME`` so the nodes' clocks do not matter. Buckets are hashes ``a3s:ratelimit:<router>`` (``key =
"router"``, the default and the original's key: a per-router kind), ``a3s:ratelimit:<middleware>`` (``global``)
or ``a3s:ratelimit:<middleware>:<client ip | header value>``, expiring once they would be full again.

Fail-open (``_support/fail_open.py``): when Redis is unreachable, errors, or does not answer within
``timeout_ms``, the request is allowed and counted, and Redis is skipped for a second; limiting resumes by itself
when Redis is back.

The client (a connection pool) is created once per worker on first use and reused by every request.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ...shared import log as gwlog
from ..chain import Middleware, Reply, error_reply
from ._support.fail_open import FailOpen
from ._support.lazy_client import LazyClient
from ._support.limit_key import LimitKey
from ._support.ratelimit_fields import RateLimitFields

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ..process import Worker

POOL_SIZE = 64
REJECTED = "Rate limit exceeded (distributed)"

# KEYS[1]: bucket; ARGV: refill rate (tokens/s), burst. Returns {admitted 0|1, seconds until a token (string)}.
TOKEN_BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(b[1]), tonumber(b[2])
if tokens == nil or ts == nil then tokens, ts = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local admitted, wait = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  admitted = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {admitted, tostring(wait)}
"""

log = gwlog.get("worker")


class RateLimitRedis(Middleware):
    def __init__(self, name: str, params: dict[str, Any], worker: Worker | None) -> None:
        super().__init__(name, params, worker)
        self.url = params["redis_url"]
        self.rate = params["rate"] / params["period"]
        self.burst = params["burst"]
        self.fields = RateLimitFields(name, params["rate"], params["period"])
        self.timeout = params["timeout_ms"] / 1000
        self.key = LimitKey(params["key"])
        self.prefix = b"a3s:ratelimit:" if params["key"] == "router" else b"a3s:ratelimit:%s:" % name.encode()
        self.script: LazyClient[Any] = LazyClient(self._open, lambda script: script.registered_client.aclose())
        self.fail_open = FailOpen(name, worker, self.url, "allowing requests")

    def on_request(self, ex: Exchange) -> Any:
        if self.fail_open.skipping():
            return None
        return self.take(ex)

    def _open(self) -> Any:
        """The token-bucket script, registered on its own connection pool (closed with it)."""
        client = aioredis.Redis.from_url(self.url, max_connections=POOL_SIZE, socket_connect_timeout=self.timeout)
        return client.register_script(TOKEN_BUCKET)

    async def take(self, ex: Exchange) -> Reply | None:
        try:
            admitted, wait = await asyncio.wait_for(
                self.script.get()(keys=[self.prefix + self.key.of(ex)], args=[repr(self.rate), repr(self.burst)]),
                self.timeout)
        except (TimeoutError, RedisError, OSError) as e:
            self.fail_open.failed(e)
            return None
        if admitted:
            return None
        return error_reply(429, REJECTED, self.fields.rejected(float(wait)))

    def close(self) -> None:
        self.script.close()
