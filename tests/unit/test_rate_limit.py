"""Token-bucket arithmetic on an explicit clock, the in-memory limiter's bound, the 429 it
answers (problem details or Personalizer's shape, Retry-After, counted) and the limits
read from settings."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from recloop.core.stats import LoopStats
from recloop.serving.rate_limit import (
    Limits,
    MemoryLimiter,
    RateLimit,
    RedisLimiter,
    client_key,
    limiter_from_settings,
    rate_limited_response,
    retry_after,
    take_token,
)
from recloop.settings import load_settings

T0 = 1_780_000_000.0  # a wall-clock time: what the limiters are given in production


def _take(limiter: MemoryLimiter, key: str, now: float) -> float:
    return asyncio.run(limiter.take(key, now))


def test_a_burst_goes_then_the_steady_rate() -> None:
    limiter = MemoryLimiter(Limits(RateLimit(per_second=2.0, burst=5)))
    assert [_take(limiter, "ip:a", T0) for _ in range(5)] == [0.0] * 5
    assert _take(limiter, "ip:a", T0) == pytest.approx(0.5)  # one token: half a second away
    assert _take(limiter, "ip:a", T0 + 0.25) == pytest.approx(0.25)
    assert _take(limiter, "ip:a", T0 + 0.5) == 0.0
    assert _take(limiter, "ip:a", T0 + 0.5) == pytest.approx(0.5)
    # steady: one request every 0.5 s goes, forever; twice that rate gets half refused
    went = [_take(limiter, "ip:a", T0 + 1.0 + i * 0.25) == 0.0 for i in range(40)]
    assert sum(went) == 20
    assert _take(limiter, "ip:b", T0) == 0.0  # buckets are per key


def test_a_long_pause_refills_to_the_burst_not_beyond() -> None:
    limiter = MemoryLimiter(Limits(RateLimit(per_second=1.0, burst=3)))
    for _ in range(3):
        _take(limiter, "k", T0)
    waits = [_take(limiter, "k", T0 + 3600) for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0] and waits[3] == pytest.approx(1.0)


def test_refusals_take_nothing_and_the_clock_stepping_back_refills_nothing() -> None:
    limit = RateLimit(per_second=1.0, burst=1)
    tokens, stamp, wait = take_token(1.0, T0, limit, T0)
    assert (tokens, wait) == (0.0, 0.0)
    for _ in range(100):  # a client hammering early does not push its turn further away
        tokens, stamp, wait = take_token(tokens, stamp, limit, T0 + 0.5)
    assert wait == pytest.approx(0.5)
    tokens, stamp, wait = take_token(tokens, stamp, limit, T0 - 100)  # clock stepped back
    assert wait == pytest.approx(0.5) and stamp == T0 + 0.5
    assert take_token(tokens, stamp, limit, T0 + 1.0)[2] == 0.0


def test_fractional_refills_add_up_to_a_whole_token() -> None:
    limiter = MemoryLimiter(Limits(RateLimit(per_second=0.1, burst=1)))
    assert _take(limiter, "k", T0) == 0.0
    # refused takes refill a tenth of a token each: ten of them sum to 0.9999999999999999
    waits = [_take(limiter, "k", T0 + s) for s in range(1, 11)]
    assert all(w > 0 for w in waits[:9]) and waits[9] == 0.0
    assert waits[0] == pytest.approx(9.0) and retry_after(waits[8]) == 1


@pytest.mark.parametrize(
    ("wait", "header"), [(1e-6, 1), (0.5, 1), (1.0, 1), (1.0000000001, 1), (1.2, 2), (9.99, 10)]
)
def test_retry_after_is_whole_seconds_rounded_up_at_least_one(wait: float, header: int) -> None:
    assert retry_after(wait) == header


def test_the_table_is_bounded_and_evicts_the_least_recently_used() -> None:
    stats = LoopStats()
    limiter = MemoryLimiter(Limits(RateLimit(1.0, 2)), max_keys=100, stats=stats)
    _take(limiter, "ip:victim", T0)
    _take(limiter, "ip:victim", T0)  # its bucket is empty now
    rng = random.Random(7)
    for i in range(10_000):  # an attacker cycling addresses within one second
        _take(limiter, f"ip:10.{rng.randrange(256)}.{i // 256 % 256}.{i % 256}", T0 + i * 1e-5)
        assert len(limiter) <= 100
    assert stats.get("rate_limit_evictions_total") >= 9_900
    # a bucket in recent use survives the churn when the oldest are the attacker's
    limiter2 = MemoryLimiter(Limits(RateLimit(1.0, 2)), max_keys=100)
    for i in range(1000):
        _take(limiter2, "ip:regular", T0 + i * 0.001)
        _take(limiter2, f"ip:x{i}", T0 + i * 0.001)
    assert "ip:regular" in limiter2._buckets


def test_refilled_buckets_are_forgotten_as_others_take() -> None:
    limiter = MemoryLimiter(Limits(RateLimit(per_second=10.0, burst=5)), max_keys=10_000)
    for i in range(1000):
        _take(limiter, f"ip:{i}", T0)
    assert len(limiter) == 1000
    for i in range(600):  # a second later every old bucket is full again: two go per take
        _take(limiter, "ip:busy", T0 + 1.0 + i * 1e-4)
    assert len(limiter) == 1  # only the busy one, emptied by its 600 takes
    assert _take(limiter, "ip:0", T0 + 2.0) == 0.0  # forgotten = a full bucket


def test_per_key_overrides_and_unlimited_callers() -> None:
    limits = Limits(None, {"batch": RateLimit(1.0, 1)})
    limiter = MemoryLimiter(limits)
    assert [_take(limiter, "ip:a", T0) for _ in range(50)] == [0.0] * 50  # no default
    assert _take(limiter, "key:batch", T0) == 0.0
    assert _take(limiter, "key:batch", T0) == pytest.approx(1.0)
    assert len(limiter) == 1  # unlimited callers hold no bucket
    both = Limits(RateLimit(100.0, 100), {"batch": RateLimit(1.0, 1)})
    assert both.get("key:batch") == RateLimit(1.0, 1)
    assert both.get("key:other") == both.get("ip:batch") == RateLimit(100.0, 100)
    with pytest.raises(ValueError):
        RateLimit(0.0, 1)
    with pytest.raises(ValueError):
        RateLimit(1.0, 0)


def _response_parts(response: object) -> tuple[int, dict[str, str], dict[str, object]]:
    status = response.status_code  # type: ignore[attr-defined]
    headers = dict(response.headers)  # type: ignore[attr-defined]
    return status, headers, json.loads(response.body)  # type: ignore[attr-defined]


def test_the_429_is_a_counted_problem_with_retry_after() -> None:
    stats = LoopStats()
    limiter = MemoryLimiter(Limits(RateLimit(per_second=0.25, burst=1)))

    async def go(path: str, now: float) -> object:
        return await rate_limited_response(limiter, "key:app", path, stats, now)

    assert asyncio.run(go("/v1/rank", T0)) is None
    status, headers, body = _response_parts(asyncio.run(go("/v1/rank", T0 + 1.0)))
    assert status == 429 and headers["retry-after"] == "3"  # 3 s to the next token
    assert headers["content-type"] == "application/problem+json"
    assert body["type"] == "https://recloop.dev/problems/rate-limited"
    assert body["status"] == 429 and body["instance"] == "/v1/rank"
    assert "0.25 requests/s (burst 1)" in str(body["detail"])
    assert stats.get("rejected_total:rate-limited") == 1
    # Personalizer's paths: its own error shape, same header
    status, headers, body = _response_parts(asyncio.run(go("/personalizer/v1.0/rank", T0 + 2.0)))
    assert status == 429 and headers["retry-after"] == "2"
    assert body == {
        "error": {
            "code": "TooManyRequests",
            "message": body["error"]["message"],  # type: ignore[index]
            "innerError": {"code": "rate-limited"},
        }
    }
    assert stats.get("rejected_total:rate-limited") == 2
    # probes are never limited, and take no token
    assert asyncio.run(go("/healthz", T0 + 2.0)) is None
    assert asyncio.run(go("/readyz", T0 + 2.0)) is None


def test_the_bucket_is_the_key_once_authenticated_else_the_address() -> None:
    assert client_key({"state": {"recloop_key": "app"}, "client": ("1.2.3.4", 5)}) == "key:app"
    assert client_key({"state": {}, "client": ("1.2.3.4", 5)}) == "ip:1.2.3.4"
    assert client_key({"client": ("::1", 5)}) == "ip:::1"
    assert client_key({"client": None}) == "ip:unknown"


def test_limits_from_settings() -> None:
    stats = LoopStats()
    assert limiter_from_settings(load_settings(), stats) is None
    memory = limiter_from_settings(load_settings(rate_limit_per_second=2.5), stats)
    assert isinstance(memory, MemoryLimiter)
    assert memory.limits.get("ip:x") == RateLimit(2.5, 3)  # burst: one second's worth
    shared = limiter_from_settings(
        load_settings(
            rate_limit_per_second=5,
            rate_limit_burst=20,
            rate_limit_keys={"ci": {"per_second": 0.5, "burst": 2}},
            rate_limit_url="redis://127.0.0.1:6379/0",
        ),
        stats,
    )
    assert isinstance(shared, RedisLimiter) and isinstance(shared.fallback, MemoryLimiter)
    assert shared.limits.get("key:ci") == RateLimit(0.5, 2)
    assert shared.limits.get("key:other") == RateLimit(5.0, 20)
    only_keys = limiter_from_settings(
        load_settings(rate_limit_keys={"ci": {"per_second": 1}}), stats
    )
    assert only_keys is not None and only_keys.limits.get("ip:x") is None
    for bad in (
        {"rate_limit_per_second": 0},
        {"rate_limit_burst": 0},
        {"rate_limit_url": "http://127.0.0.1:6379"},
        {"rate_limit_keys": {"ci": {"per_second": 1, "burts": 3}}},
    ):
        with pytest.raises(Exception, match="invalid settings"):
            load_settings(**bad)
