"""Where ``token-meter`` keeps its sliding-window budgets: the node's plane, or Redis for several nodes.

Both stores offer the same two steps, so the meter does not care which it has:

- ``charge(budgets, n)``: if every budget (fingerprint, window, limit) is under its limit, add ``n`` to all of
  them, atomically (the plane: under its bucket locks, across workers; Redis: one Lua script, across nodes).
  Returns (index of the first budget at or over its limit or -1, each budget's usage before the charge,
  seconds until the refused budget has room again, the charge's time).
- ``settle(budgets, charged, at, n)``: take back the pre-charge made at ``at`` and record the real ``n``.

The window is the plane's (``shared/plane/ai.py``): SUB sub-windows, the oldest weighted by the part of it still
inside the window. Redis keeps it as a hash of sub-window id → amount per budget (``a3s:tokens:<fingerprint>``),
expiring after two windows, on Redis ``TIME`` so the nodes' clocks do not matter.

Fail-open (Redis, ``fail_open.py``): unreachable, erroring or slower than ``timeout_ms``, a request is admitted
uncharged and counted (``a3s_gateway_rate_limit_redis_fail_open_total``, as for ``rate-limit-redis``), and Redis
is skipped for a second.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ....shared.plane.ai import SUB, AiTable
from .fail_open import FailOpen
from .lazy_client import LazyClient

if TYPE_CHECKING:
    from ....shared.plane import Plane

Budgets = list[tuple[bytes, float, float]]        # (fingerprint, window seconds, limit)
Charged = tuple[int, list[float], float, float]   # (refused index or -1, usage before, retry after, time)

POOL_SIZE = 64


class PlaneBudgets:
    def __init__(self, plane: Plane) -> None:
        self.plane = plane

    async def charge(self, budgets: Budgets, n: int) -> Charged | None:
        now = time.time()
        refused, used, per = self.plane.token_charge(budgets, n, now)
        if refused < 0:
            return -1, used, 0.0, now
        _, window, limit = budgets[refused]
        return refused, used, AiTable.retry_after(per, limit, window, now), now

    def settle(self, budgets: Budgets, charged: int, at: float, n: int) -> None:
        now = time.time()
        for fp, window, _ in budgets:
            self.plane.token_settle(fp, window, charged, at, n, now)


# KEYS: budgets; ARGV: SUB, n, then (window, limit) per key. Returns {refused index (0-based) or -1, now,
# usage before per key..., then for a refused key its SUB + 1 sub-window amounts, oldest first}.
CHARGE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local sub_n, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local used, subs = {}, {}
for i, key in ipairs(KEYS) do
  local window, limit = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
  local pos = now * sub_n / window
  local sub = math.floor(pos)
  local fields = {}
  for j = 0, sub_n do fields[j + 1] = tostring(sub - sub_n + j) end
  local per = redis.call('HMGET', key, unpack(fields))
  local total = 0
  for j = 1, sub_n + 1 do
    local v = tonumber(per[j]) or 0
    per[j] = tostring(v)
    if j == 1 then total = total + v * (1 - (pos - sub)) else total = total + v end
  end
  used[i] = tostring(total)
  subs[i] = sub
  if total >= limit then
    local out = {i - 1, tostring(now)}
    for k = 1, #used do out[#out + 1] = used[k] end
    for j = 1, sub_n + 1 do out[#out + 1] = per[j] end
    return out
  end
end
for i, key in ipairs(KEYS) do
  redis.call('HINCRBY', key, tostring(subs[i]), n)
  redis.call('PEXPIRE', key, math.ceil(tonumber(ARGV[1 + 2 * i]) * 2000))
end
local out = {-1, tostring(now)}
for k = 1, #used do out[#out + 1] = used[k] end
return out
"""

# KEYS: budgets; ARGV: SUB, charged, at, n, then window per key.
SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local sub_n, charged, at, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
for i, key in ipairs(KEYS) do
  local window = tonumber(ARGV[4 + i])
  local field = tostring(math.floor(at * sub_n / window))
  local was = tonumber(redis.call('HGET', key, field) or '0')
  if charged > 0 and was > 0 then redis.call('HINCRBY', key, field, -math.min(charged, was)) end
  if n > 0 then
    redis.call('HINCRBY', key, tostring(math.floor(now * sub_n / window)), n)
    redis.call('PEXPIRE', key, math.ceil(window * 2000))
  end
end
return 1
"""


class RedisBudgets:
    def __init__(self, url: str, timeout: float, fail_open: FailOpen) -> None:
        self.url = url
        self.timeout = timeout
        self.fail_open = fail_open
        self.scripts: LazyClient[Any] = LazyClient(self._open, lambda s: s[0].registered_client.aclose())

    def _open(self) -> Any:
        client = aioredis.Redis.from_url(self.url, max_connections=POOL_SIZE, socket_connect_timeout=self.timeout)
        return client.register_script(CHARGE), client.register_script(SETTLE)

    @staticmethod
    def _keys(budgets: Budgets) -> list[bytes]:
        return [b"a3s:tokens:" + fp.hex().encode() for fp, _, _ in budgets]

    async def charge(self, budgets: Budgets, n: int) -> Charged | None:
        """None: Redis failed, the request is admitted uncharged (fail-open)."""
        if self.fail_open.skipping():
            return None
        args: list[Any] = [SUB, n]
        for _, window, limit in budgets:
            args += [repr(window), repr(limit)]
        try:
            out = await asyncio.wait_for(self.scripts.get()[0](keys=self._keys(budgets), args=args), self.timeout)
        except (TimeoutError, RedisError, OSError) as e:
            self.fail_open.failed(e)
            return None
        refused, now = int(out[0]), float(out[1])
        used = [float(v) for v in out[2:2 + len(budgets)]]
        if refused < 0:
            return -1, used, 0.0, now
        per = [int(float(v)) for v in out[2 + len(budgets):]]
        _, window, limit = budgets[refused]
        return refused, used, AiTable.retry_after(per, limit, window, now), now

    def settle(self, budgets: Budgets, charged: int, at: float, n: int) -> None:
        task = asyncio.get_running_loop().create_task(self._settle(budgets, charged, at, n))
        PENDING.add(task)
        task.add_done_callback(PENDING.discard)

    async def _settle(self, budgets: Budgets, charged: int, at: float, n: int) -> None:
        args: list[Any] = [SUB, charged, repr(at), n, *(repr(window) for _, window, _ in budgets)]
        try:
            await asyncio.wait_for(self.scripts.get()[1](keys=self._keys(budgets), args=args), self.timeout)
        except (TimeoutError, RedisError, OSError) as e:
            self.fail_open.failed(e)

    def close(self) -> None:
        self.scripts.close()


PENDING: set[asyncio.Task] = set()                # settle calls in flight (a task is kept until it ends)
