"""The shared store for several gateway replicas: one Redis, atomic Lua scripts.

Each take or charge is one `EVALSHA` over all buckets of the request, so it
is atomic across every replica (Redis runs one script at a time). The
refill rule is the same as `base.refill`. Keys expire after a few windows
of disuse. Timeouts are short (`SOCKET_TIMEOUT_S`): a Redis that is down or
stuck raises `StoreUnavailable` within that time, and the limits module
applies the configured failure mode; a request never hangs on it.

All keys of one call go to one script, so a Redis Cluster would need them
in one slot; llmgw targets one Redis (or a Sentinel-managed primary).
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from extproc.store.base import Bucket, StoreUnavailable, Taken

SOCKET_TIMEOUT_S = 0.25
KEY_PREFIX = "llmgw:rl:"

# KEYS: buckets. ARGV: mode ("take" | "charge"), then per bucket: capacity, ceiling, window, ttl, need, amount.
# Returns {allowed (0/1), level1, level2, ...} with levels as strings (Lua numbers lose nothing as %.17g).
_SCRIPT = """
local mode = ARGV[1]
local levels = {}
for i, key in ipairs(KEYS) do
  local base = 1 + (i - 1) * 6
  local capacity = tonumber(ARGV[base + 1])
  local ceiling = tonumber(ARGV[base + 2])
  local window = tonumber(ARGV[base + 3])
  local state = redis.call('HMGET', key, 'l', 'w')
  local level = ceiling
  if state[1] then
    level = tonumber(state[1])
    local last = tonumber(state[2])
    if window > last then
      level = math.min(ceiling, level + (window - last) * capacity)
    end
  end
  levels[i] = level
end
local allowed = 1
if mode == 'take' then
  for i = 1, #KEYS do
    if levels[i] < tonumber(ARGV[1 + (i - 1) * 6 + 5]) then allowed = 0 end
  end
end
local out = {allowed}
for i, key in ipairs(KEYS) do
  local base = 1 + (i - 1) * 6
  if allowed == 1 then
    levels[i] = math.min(tonumber(ARGV[base + 2]), levels[i] - tonumber(ARGV[base + 6]))
    local state = redis.call('HGET', key, 'w')
    local window = tonumber(ARGV[base + 3])
    if state and tonumber(state) > window then window = tonumber(state) end
    redis.call('HSET', key, 'l', string.format('%.17g', levels[i]), 'w', window)
    redis.call('EXPIRE', key, tonumber(ARGV[base + 4]))
  end
  out[i + 1] = string.format('%.17g', levels[i])
end
return out
"""


class RedisStore:
    name = "redis"

    def __init__(self, url: str, *, timeout_s: float = SOCKET_TIMEOUT_S) -> None:
        self._redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry_on_timeout=False,
            health_check_interval=0,
            decode_responses=False,
        )
        self._script = self._redis.register_script(_SCRIPT)

    async def take(self, buckets: Sequence[Bucket], *, need: Sequence[float], take: Sequence[float]) -> Taken:
        out = await self._run("take", buckets, need, take)
        return Taken(allowed=out[0], levels=out[1])

    async def charge(self, buckets: Sequence[Bucket], *, amounts: Sequence[float]) -> tuple[float, ...]:
        return (await self._run("charge", buckets, [0.0] * len(buckets), amounts))[1]

    async def close(self) -> None:
        await self._redis.aclose()

    async def _run(
        self, mode: str, buckets: Sequence[Bucket], need: Sequence[float], amounts: Sequence[float]
    ) -> tuple[bool, tuple[float, ...]]:
        args: list[str | float | int] = [mode]
        for b, n, a in zip(buckets, need, amounts, strict=True):
            args += [repr(b.capacity), repr(b.ceiling), b.window, max(1, b.ttl_s), repr(n), repr(a)]
        keys = [KEY_PREFIX + b.key for b in buckets]
        try:
            try:
                raw = await self._script(keys=keys, args=args)
            except NoScriptError:  # a restarted Redis forgot the script: load it again
                raw = await self._script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"redis store: {type(exc).__name__}: {exc}") from exc
        return bool(int(raw[0])), tuple(float(v) for v in raw[1:])
