"""Per-caller rate limits: a token bucket per API key (or per client IP when the server has
no keys), kept in this process's memory or, when several servers share a loop, in Redis.

A bucket holds up to ``burst`` tokens and refills at ``per_second``; a request takes one
token or, when none is left, is answered 429 with ``Retry-After`` (the seconds until a
token is back). One pure function (``take_token``) is the arithmetic; the in-memory limiter
runs it on a bounded table, the Redis limiter runs the same steps in one Lua script, so both
answer the same sequence of requests alike (the tests hold them to it).

Time is the caller's wall clock (``time.time()``), passed in: the tests drive it, and
several servers share a Redis bucket by agreeing on it. A clock that steps back never
refills a bucket twice (the stamp only moves forward); small skew between servers only
delays a refill by the skew.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from threading import Lock
from typing import Any, Protocol

from fastapi.responses import Response
from starlette.types import Scope

from recloop.core.errors import RateLimitedError
from recloop.core.stats import LoopStats
from recloop.serving.problems import count_rejection, error_problem
from recloop.serving.routes import personalizer_routing
from recloop.settings import Settings

log = logging.getLogger(__name__)

_EPS = 1e-9
"""Slack for float sums: ten refills of 0.1 token are one token, not 0.9999999999999999."""
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
"""Never limited: a load balancer's probes or a scraper must not be told 429 and pull a
healthy server out of rotation."""


@dataclass(frozen=True)
class RateLimit:
    """``per_second`` tokens refill a bucket of ``burst`` tokens; one request, one token."""

    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if not (self.per_second > 0 and math.isfinite(self.per_second)) or self.burst < 1:
            raise ValueError(f"a rate limit needs per_second > 0 and burst >= 1: {self}")


@dataclass(frozen=True)
class Limits:
    """Which limit a bucket has: ``keys`` (API key name -> its own limit) first, then
    ``default`` (None: not limited). Client IPs always get the default."""

    default: RateLimit | None
    keys: Mapping[str, RateLimit] = field(default_factory=dict)

    def get(self, bucket: str) -> RateLimit | None:
        if bucket.startswith("key:"):
            return self.keys.get(bucket[4:], self.default)
        return self.default

    def __bool__(self) -> bool:
        return self.default is not None or bool(self.keys)


def take_token(
    tokens: float, stamp: float, limit: RateLimit, now: float
) -> tuple[float, float, float]:
    """One request against a bucket holding ``tokens`` as of ``stamp``: the bucket after it
    (tokens, stamp) and the wait, 0 when the request may go, else the seconds until a token
    is back. A refused request takes nothing, so a client that keeps retrying early is not
    locked out for longer. ``_LUA`` repeats these steps: change both or neither."""
    if now > stamp:
        tokens = min(float(limit.burst), tokens + (now - stamp) * limit.per_second)
        stamp = now
    if tokens >= 1.0 - _EPS:
        return max(0.0, tokens - 1.0), stamp, 0.0
    return tokens, stamp, (1.0 - tokens) / limit.per_second


def retry_after(wait: float) -> int:
    """``Retry-After`` for a wait: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(wait - _EPS))


class Limiter(Protocol):
    """``take`` one token of ``key``'s bucket at wall-clock time ``now``: 0.0 when the
    request may go, else the seconds until it may. Never raises for a backend failure."""

    limits: Limits

    async def take(self, key: str, now: float) -> float: ...

    async def aclose(self) -> None: ...


class MemoryLimiter:
    """Buckets in this process's memory: exact for one process; with N serving processes
    (``workers``) or servers a client may get N times the limit (use Redis for one shared
    bucket).

    The table is bounded (``max_keys``), least recently used first out: an attacker cycling
    keys or source addresses cannot grow it. A bucket is forgotten as soon as it would be
    full anyway (no state lost), and when the table is full of busy buckets the oldest is
    dropped (counted, ``rate_limit_evictions_total``): that caller starts again from a full
    bucket, which is what any new caller gets, so eviction gives nobody more than a burst."""

    def __init__(self, limits: Limits, max_keys: int = 100_000, stats: LoopStats | None = None):
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.limits = limits
        self.max_keys = max_keys
        self._stats = stats
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = Lock()  # a take is one step; the lock only guards callers on threads

    def __len__(self) -> int:
        return len(self._buckets)

    async def take(self, key: str, now: float) -> float:
        return self.take_now(key, now)

    def take_now(self, key: str, now: float) -> float:
        limit = self.limits.get(key)
        if limit is None:
            return 0.0
        with self._lock:
            self._forget_full(now, 2)
            bucket = self._buckets.pop(key, None)
            if bucket is None:
                bucket = (float(limit.burst), now)
                if len(self._buckets) >= self.max_keys:
                    self._buckets.popitem(last=False)
                    if self._stats is not None:
                        self._stats.inc("rate_limit_evictions_total")
            tokens, stamp, wait = take_token(bucket[0], bucket[1], limit, now)
            self._buckets[key] = (tokens, stamp)  # to the end: most recently used
            return wait

    def _forget_full(self, now: float, at_most: int) -> None:
        """Drop up to ``at_most`` of the oldest buckets that have refilled: a full bucket
        and no bucket answer alike. A few per take keep the table small at no visible cost."""
        for _ in range(at_most):
            if not self._buckets:
                return
            key, (tokens, stamp) = next(iter(self._buckets.items()))
            limit = self.limits.get(key)
            if limit is not None and tokens + (now - stamp) * limit.per_second < limit.burst:
                return
            del self._buckets[key]

    async def aclose(self) -> None:
        self._buckets.clear()


_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 't', 's')
local tokens = tonumber(state[1])
local stamp = tonumber(state[2])
if tokens == nil or stamp == nil then
  tokens = burst
  stamp = now
end
if now > stamp then
  tokens = math.min(burst, tokens + (now - stamp) * rate)
  stamp = now
end
local wait = 0
if tokens >= 1 - 1e-9 then
  tokens = math.max(0, tokens - 1)
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 't', string.format('%.17g', tokens), 's', string.format('%.17g', stamp))
local idle_ms = math.ceil((burst - tokens) / rate * 1000) + 1000
redis.call('PEXPIRE', KEYS[1], string.format('%d', idle_ms))
return string.format('%.17g', wait)
"""
"""``take_token`` on a Redis hash (``t`` tokens, ``s`` stamp), atomic: one script per take,
so servers sharing the bucket never both spend its last token. The key expires once the
bucket would be full again (plus a second), so idle callers cost Redis nothing."""


class RedisLimiter:
    """One bucket per key in Redis, shared by every server pointing at it.

    When Redis cannot answer (down, hanging, full), the request is not refused and not held:
    rate limits protect capacity, they are not the authentication, and an outage of this
    auxiliary store must not take the API down with it (on these machines Redis keeps
    nothing on disk: a restart empties every bucket anyway). The request is decided by
    ``fallback`` (by default, the same limits in this process's memory: each server still
    limits on its own) or, with none, let through. Each failure is counted
    (``rate_limit_backend_errors_total{reason}``), decisions made without Redis too
    (``rate_limit_degraded_total``), and ``rate_limit_backend_up`` drops to 0: an operator
    sees the outage on /metrics. Timeouts are short and no retries are made, and after a
    failure Redis is left alone for ``retry_seconds`` (then one request tries it again),
    so a dead Redis costs one timeout per that interval, not one per request."""

    def __init__(
        self,
        url: str,
        limits: Limits,
        stats: LoopStats,
        prefix: str = "recloop:ratelimit:",
        timeout: float = 0.25,
        retry_seconds: float = 2.0,
        fallback: Limiter | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        import redis.asyncio as aredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.limits = limits
        self.prefix = prefix
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self.fallback = fallback
        self._stats = stats
        self._monotonic = monotonic
        self._client: Any = aredis.Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._script = self._client.register_script(_LUA)
        self._down_until: float | None = None
        self._probing = False

    @property
    def up(self) -> bool:
        """False from a failure until Redis answers again."""
        return self._down_until is None

    async def take(self, key: str, now: float) -> float:
        limit = self.limits.get(key)
        if limit is None:
            return 0.0
        probe = False
        if self._down_until is not None:
            if self._probing or self._monotonic() < self._down_until:
                return await self._degraded(key, now)
            probe = self._probing = True
        try:
            async with asyncio.timeout(self.timeout):
                raw = await self._script(
                    keys=[self.prefix + key],
                    args=[repr(limit.per_second), limit.burst, repr(now)],
                )
            wait = float(raw)
        except Exception as exc:  # any failure of the backend: decided without it
            self._failed(exc)
            return await self._degraded(key, now)
        finally:
            if probe:
                self._probing = False
        if self._down_until is not None:
            log.warning("rate limits: Redis answers again")
            self._down_until = None
        self._stats.set("rate_limit_backend_up", 1.0)
        return wait

    def _failed(self, exc: Exception) -> None:
        import redis.exceptions as rex

        if isinstance(exc, (TimeoutError, rex.TimeoutError)):
            reason = "timeout"
        elif isinstance(exc, (OSError, rex.ConnectionError)):
            reason = "connection"
        else:  # out of memory, read-only replica, a script error...
            reason = type(exc).__name__
        self._stats.inc(f"rate_limit_backend_errors_total:{reason}")
        self._stats.set("rate_limit_backend_up", 0.0)
        if self._down_until is None:
            log.warning(
                "rate limits: Redis failed (%r); deciding without it, retrying in %.1f s",
                exc,
                self.retry_seconds,
            )
        self._down_until = self._monotonic() + self.retry_seconds

    async def _degraded(self, key: str, now: float) -> float:
        self._stats.inc("rate_limit_degraded_total")
        return 0.0 if self.fallback is None else await self.fallback.take(key, now)

    async def aclose(self) -> None:
        await self._client.aclose()
        if self.fallback is not None:
            await self.fallback.aclose()


def limits_from_settings(settings: Settings) -> Limits:
    def limit(per_second: float, burst: int | None) -> RateLimit:
        return RateLimit(per_second, burst if burst is not None else max(1, math.ceil(per_second)))

    default = (
        None
        if settings.rate_limit_per_second is None
        else limit(settings.rate_limit_per_second, settings.rate_limit_burst)
    )
    keys = {n: limit(k.per_second, k.burst) for n, k in settings.rate_limit_keys.items()}
    return Limits(default, keys)


def limiter_from_settings(settings: Settings, stats: LoopStats) -> Limiter | None:
    """The server's limiter, or None when nothing is limited. With ``rate_limit_url`` the
    buckets live in Redis, and this process's memory stands in while Redis is away."""
    limits = limits_from_settings(settings)
    if not limits:
        return None
    memory = MemoryLimiter(limits, stats=stats)
    if settings.rate_limit_url is None:
        return memory
    return RedisLimiter(
        settings.rate_limit_url, limits, stats, prefix=settings.rate_limit_prefix, fallback=memory
    )


def client_key(scope: Scope) -> str:
    """The bucket of a request: ``key:NAME`` once the Guard has authenticated an API key
    (``scope["state"]["recloop_key"]``), else ``ip:ADDRESS`` of the peer. Behind a proxy
    the peer is the proxy: let uvicorn rewrite it from ``X-Forwarded-For``
    (``--forwarded-allow-ips``, trusted proxies only); a header any client can write is
    never read here."""
    name = (scope.get("state") or {}).get("recloop_key")
    if name:
        return f"key:{name}"
    client = scope.get("client")
    return f"ip:{client[0]}" if client else "ip:unknown"


async def rate_limited_response(
    limiter: Limiter, key: str, path: str, stats: LoopStats, now: float | None = None
) -> Response | None:
    """None when the request may go; else the 429 to send, counted as
    ``rejected_total{reason="rate-limited"}``: problem details, or Personalizer's error
    shape (code ``TooManyRequests``) on its paths, with ``Retry-After`` either way."""
    if path in EXEMPT_PATHS:
        return None
    wait = await limiter.take(key, time.time() if now is None else now)
    if wait <= 0.0:
        return None
    seconds = retry_after(wait)
    limit = limiter.limits.get(key)
    what = "this API key" if key.startswith("key:") else "this client address"
    rate = f" of {limit.per_second:g} requests/s (burst {limit.burst})" if limit else ""
    exc = RateLimitedError(
        f"the rate limit{rate} of {what} is reached; try again in {seconds} s",
        retry_after=seconds,
    )
    if personalizer_routing.is_personalizer_path(path):
        count_rejection(exc, stats)
        return personalizer_routing.from_recloop_error(exc)
    return error_problem(exc, path, stats)
