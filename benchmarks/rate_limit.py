"""What a rate limit costs a request: one token taken from the in-process bucket table,
and from the Redis bucket every server shares (one Lua script, a loopback round trip), with
a Redis PING in the same run as the yardstick (the round trip nothing can beat).

    python -m benchmarks.rate_limit [--quick]

Needs Redis on 127.0.0.1:6379 for the Redis figures (skipped, saying so, without it).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from benchmarks.common import cli, figure, print_table, summarize
from recloop.core.stats import LoopStats
from recloop.serving.rate_limit import Limiter, Limits, MemoryLimiter, RateLimit, RedisLimiter

BENCH = "rate_limit"
URL = "redis://127.0.0.1:6379/0"
LIMITS = Limits(RateLimit(per_second=1e6, burst=1_000_000))
"""Never refuses: every take is the full path (read, refill, take, write)."""
CALLERS = 50


async def _takes_us(limiter: Limiter, n: int) -> list[float]:
    out = []
    for i in range(n):
        start = time.perf_counter()
        await limiter.take(f"key:caller-{i % CALLERS}", time.time())
        out.append((time.perf_counter() - start) * 1e6)
    return out


async def _pings_us(n: int) -> list[float]:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(URL)
    try:
        out = []
        for _ in range(n):
            start = time.perf_counter()
            await client.ping()
            out.append((time.perf_counter() - start) * 1e6)
        return out
    finally:
        await client.aclose()


def _row(name: str, sample: list[float], **extra: Any) -> dict[str, Any]:
    s = summarize(sample)
    figure(BENCH, f"{name}_p99_us", s["p99"], None, s["n"], **extra)
    return figure(BENCH, f"{name}_p50_us", s["p50"], None, s["n"], p99=s["p99"], **extra)


async def _measure(n: int) -> list[dict[str, Any]]:
    memory = MemoryLimiter(LIMITS)
    await _takes_us(memory, n // 10)  # warm-up
    rows = [_row("memory_take", await _takes_us(memory, n))]
    redis_limiter = RedisLimiter(URL, LIMITS, LoopStats(), prefix=f"bench:{uuid.uuid4().hex}:")
    try:
        await _takes_us(redis_limiter, n // 10)
        if not redis_limiter.up:
            figure(BENCH, "redis_take_p50_us", float("nan"), None, 0, reason="Redis unreachable")
            return rows
        takes = await _takes_us(redis_limiter, n)
        pings = await _pings_us(n)
    finally:
        await redis_limiter.aclose()
    ratio = summarize(takes)["p50"] / summarize(pings)["p50"]
    rows.append(_row("redis_take", takes, ratio_to_ping=round(ratio, 2)))
    rows.append(_row("redis_ping_yardstick", pings))
    return rows


def main(quick: bool = False) -> list[dict[str, Any]]:
    rows = asyncio.run(_measure(1000 if quick else 10_000))
    print_table("one rate-limit check per request", rows)
    return rows


if __name__ == "__main__":
    cli(main, "what a rate-limit check costs: in memory, in Redis, against a Redis PING")
