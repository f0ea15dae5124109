"""Rate limits in a real Redis: several limiters (servers) share one bucket per key, the Lua
script answers exactly as the in-memory arithmetic does, concurrent takes never spend a
token twice, idle buckets expire; and a Redis that is down, hangs, or comes back is
handled quickly and visibly (fails open to the fallback, counted, retried later)."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from recloop.core.stats import LoopStats
from recloop.serving.rate_limit import Limits, MemoryLimiter, RateLimit, RedisLimiter
from tests.e2e.conftest import free_port
from tests.integration.stream_services import RedisServer

pytestmark = pytest.mark.services
URL = "redis://127.0.0.1:6379/0"
T0 = 1_780_000_000.0


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own on the shared Redis; its keys are deleted after."""
    import redis

    client = redis.Redis.from_url(URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is not running on 127.0.0.1:6379: {exc}")
        pytest.skip(f"Redis is not running on 127.0.0.1:6379: {exc}")
    name = f"test:rl:{uuid.uuid4().hex}:"
    yield name
    keys = list(client.scan_iter(f"{name}*"))
    if keys:
        client.delete(*keys)
    client.close()


def _limiter(limits: Limits, prefix: str, url: str = URL, **kw: Any) -> RedisLimiter:
    return RedisLimiter(url, limits, kw.pop("stats", LoopStats()), prefix=prefix, **kw)


def test_two_servers_share_one_bucket_per_key(prefix: str) -> None:
    limits = Limits(RateLimit(per_second=1.0, burst=5))

    async def go() -> tuple[list[float], list[float], float, float]:
        a, b = _limiter(limits, prefix), _limiter(limits, prefix)
        try:
            burst = [await (a if i % 2 else b).take("key:app", T0) for i in range(5)]
            over = [await a.take("key:app", T0), await b.take("key:app", T0 + 0.5)]
            other = await b.take("key:other", T0)
            later = await a.take("key:app", T0 + 1.0)
            return burst, over, other, later
        finally:
            await a.aclose()
            await b.aclose()

    burst, over, other, later = asyncio.run(go())
    assert burst == [0.0] * 5
    assert over == [pytest.approx(1.0), pytest.approx(0.5)]  # the other server's view too
    assert other == 0.0 and later == 0.0


def test_the_script_answers_as_the_memory_arithmetic(prefix: str) -> None:
    limits = Limits(RateLimit(per_second=3.7, burst=4), {"slow": RateLimit(0.3, 2)})
    rng = random.Random(42)
    now, calls = T0, []
    for _ in range(400):
        now += rng.choice([0.0, 0.0, 0.01, 0.1, 0.37, 1.3, 4.0])
        calls.append((rng.choice(["ip:a", "ip:b", "key:slow", "key:fast"]), now))
    memory = MemoryLimiter(limits)

    async def go() -> list[float]:
        redis_limiter = _limiter(limits, prefix)
        try:
            return [await redis_limiter.take(key, t) for key, t in calls]
        finally:
            await redis_limiter.aclose()

    shared = asyncio.run(go())
    local = [memory.take_now(key, t) for key, t in calls]
    assert shared == pytest.approx(local, abs=1e-9)
    assert 0 < sum(w > 0 for w in local) < len(local)  # the sequence exercised both answers


def test_concurrent_takes_never_spend_a_token_twice(prefix: str) -> None:
    limits = Limits(RateLimit(per_second=0.001, burst=50))

    async def go() -> list[float]:
        # a generous timeout: this is about the script's atomicity, and 200 takes at once
        # on a loaded machine (the other test worker) can pass the default 0.25 s, when
        # the limiter decides without Redis (fails open) and lets more through
        servers = [_limiter(limits, prefix, timeout=10.0) for _ in range(3)]
        try:
            return list(
                await asyncio.gather(
                    *(servers[i % 3].take("key:hot", T0 + i * 1e-6) for i in range(200))
                )
            )
        finally:
            for s in servers:
                await s.aclose()

    waits = asyncio.run(go())
    assert sum(w == 0.0 for w in waits) == 50


def test_idle_buckets_expire(prefix: str) -> None:
    import redis

    limits = Limits(RateLimit(per_second=2.0, burst=4))

    async def go() -> None:
        limiter = _limiter(limits, prefix)
        try:
            for _ in range(3):
                await limiter.take("ip:10.0.0.1", time.time())
        finally:
            await limiter.aclose()

    asyncio.run(go())
    client = redis.Redis.from_url(URL)
    ttl_ms = client.pttl(f"{prefix}ip:10.0.0.1")
    client.close()
    # 1 token left of 4 at 2/s: full again in 1.5 s, plus a second's margin
    assert 2000 < ttl_ms <= 2500


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_redis_down_fails_open_quickly_and_is_counted() -> None:
    stats, clock = LoopStats(), Clock()
    closed = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    limits = Limits(RateLimit(per_second=1.0, burst=2))

    async def go() -> tuple[list[float], float]:
        limiter = _limiter(limits, "rl:", closed, stats=stats, monotonic=clock)
        started = time.perf_counter()
        try:
            waits = [await limiter.take("key:app", T0) for _ in range(200)]
            return waits, time.perf_counter() - started
        finally:
            await limiter.aclose()

    waits, took = asyncio.run(go())
    assert waits == [0.0] * 200  # open: no fallback given
    assert took < 1.0
    errors = {k: v for k, v in stats.counters().items() if "backend_errors" in k}
    assert errors == {"rate_limit_backend_errors_total:connection": 1}  # then left alone
    assert stats.get("rate_limit_degraded_total") == 200
    assert stats.gauges()["rate_limit_backend_up"] == 0.0


def test_while_redis_is_away_the_fallback_limits_and_redis_is_retried_later() -> None:
    stats, clock = LoopStats(), Clock()
    server = RedisServer()
    limits = Limits(RateLimit(per_second=1.0, burst=2))

    async def go() -> None:
        fallback = MemoryLimiter(limits)
        limiter = _limiter(
            limits, "rl:", server.url, stats=stats, monotonic=clock, fallback=fallback
        )
        try:
            waits = [await limiter.take("key:app", T0) for _ in range(3)]
            assert waits[:2] == [0.0, 0.0] and waits[2] == pytest.approx(1.0)  # in-process
            assert not limiter.up
            await asyncio.to_thread(server.start)
            assert await limiter.take("key:app", T0) == pytest.approx(1.0)  # not yet retried
            clock.now += limiter.retry_seconds
            assert await limiter.take("key:app", T0) == 0.0  # Redis again: its own bucket
            assert limiter.up and stats.gauges()["rate_limit_backend_up"] == 1.0
            assert await limiter.take("key:app", T0) == 0.0
            assert await limiter.take("key:app", T0) == pytest.approx(1.0)
        finally:
            await limiter.aclose()

    try:
        asyncio.run(go())
    finally:
        server.stop()
    assert stats.get("rate_limit_degraded_total") == 4


def test_a_hanging_redis_holds_a_request_for_the_timeout_only() -> None:
    stats = LoopStats()
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        limits = Limits(RateLimit(per_second=1.0, burst=2))

        async def go() -> tuple[list[float], list[float]]:
            limiter = _limiter(limits, "rl:", url, stats=stats, timeout=0.2)
            waits, times = [], []
            try:
                for _ in range(20):
                    started = time.perf_counter()
                    waits.append(await limiter.take("key:app", T0))
                    times.append(time.perf_counter() - started)
                return waits, times
            finally:
                await limiter.aclose()

        waits, times = asyncio.run(go())
    assert waits == [0.0] * 20
    assert 0.15 < times[0] < 1.0  # the one try waited for its timeout...
    assert max(times[1:]) < 0.05  # ...the others did not try
    assert stats.get("rate_limit_backend_errors_total:timeout") == 1
