"""The 429 over real HTTP: a small app behind the same few lines of ASGI the Guard runs
(``client_key`` + ``rate_limited_response``), served by uvicorn on a loopback port. Shows
the response as clients see it (status, ``Retry-After``, problem details or Personalizer's
shape), that probes are never limited, and that two servers on one Redis share a bucket;
then the real server (``create_app``) limiting each API key on its own."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from recloop.core.stats import LoopStats
from recloop.serving.rate_limit import (
    Limiter,
    Limits,
    MemoryLimiter,
    RateLimit,
    RedisLimiter,
    client_key,
    rate_limited_response,
)
from tests.e2e.conftest import Server, free_port
from tests.e2e.test_api import RANK
from tests.e2e.test_keys_api import _add, _h, _metric

LIMITS = Limits(RateLimit(per_second=0.2, burst=3))  # a token per 5 s: none refills mid-test


class Limited:
    """What the Guard does once it knows the caller (the lead's wiring, in small)."""

    def __init__(self, app: ASGIApp, limiter: Limiter, stats: LoopStats) -> None:
        self.app, self.limiter, self.stats = app, limiter, stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            response = await rate_limited_response(
                self.limiter, client_key(scope), scope["path"], self.stats
            )
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _app(limiter: Limiter, stats: LoopStats) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/rank")
    async def rank() -> dict[str, str]:
        return {"ok": "ranked"}

    @app.post("/personalizer/v1.0/rank", status_code=201)
    async def personalizer_rank() -> dict[str, str]:
        return {"ok": "ranked"}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(Limited, limiter=limiter, stats=stats)
    return app


@contextmanager
def _serve(limiter: Limiter, stats: LoopStats) -> Iterator[httpx.Client]:
    port = free_port()
    config = uvicorn.Config(_app(limiter, stats), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def test_over_the_limit_a_client_gets_429_problem_details_with_retry_after() -> None:
    stats = LoopStats()
    with _serve(MemoryLimiter(LIMITS), stats) as api:
        assert [api.post("/v1/rank").status_code for _ in range(3)] == [200] * 3
        refused = api.post("/v1/rank")
        assert refused.status_code == 429
        assert refused.headers["retry-after"] in {"4", "5"}
        assert refused.headers["content-type"] == "application/problem+json"
        body = refused.json()
        assert body["type"] == "https://recloop.dev/problems/rate-limited"
        assert body["title"] == "Too many requests" and body["status"] == 429
        assert body["instance"] == "/v1/rank"
        assert "client address" in body["detail"]
        # Personalizer's clients see Personalizer's shape (the same bucket: the same caller)
        refused = api.post("/personalizer/v1.0/rank")
        assert refused.status_code == 429 and refused.headers["retry-after"] in {"4", "5"}
        assert refused.json()["error"]["code"] == "TooManyRequests"
        assert [api.get("/healthz").status_code for _ in range(10)] == [200] * 10
    assert stats.get("rejected_total:rate-limited") == 2


@pytest.mark.services
def test_two_servers_on_one_redis_share_the_callers_bucket() -> None:
    import redis

    prefix = f"test:rl-e2e:{uuid.uuid4().hex}:"
    plain = redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_connect_timeout=1)
    try:
        plain.ping()
    except redis.ConnectionError as exc:
        pytest.skip(f"Redis is not running on 127.0.0.1:6379: {exc}")
    stats_a, stats_b = LoopStats(), LoopStats()
    limiter_a = RedisLimiter("redis://127.0.0.1:6379/0", LIMITS, stats_a, prefix=prefix)
    limiter_b = RedisLimiter("redis://127.0.0.1:6379/0", LIMITS, stats_b, prefix=prefix)
    try:
        with _serve(limiter_a, stats_a) as a, _serve(limiter_b, stats_b) as b:
            codes = [a.post("/v1/rank").status_code, b.post("/v1/rank").status_code]
            codes += [a.post("/v1/rank").status_code, b.post("/v1/rank").status_code]
            assert codes == [200, 200, 200, 429]  # 3 in all, not 3 per server
            assert a.post("/v1/rank").status_code == 429
    finally:
        keys = list(plain.scan_iter(f"{prefix}*"))
        if keys:
            plain.delete(*keys)
        plain.close()
    assert stats_a.get("rejected_total:rate-limited") == 1
    assert stats_b.get("rejected_total:rate-limited") == 1
    assert stats_a.gauges()["rate_limit_backend_up"] == 1.0


def test_the_server_limits_each_key_on_its_own(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    """``create_app``'s Guard: a bucket per authenticated key (the default limit, or the
    key's own), checked after the key (a wrong key is 401, never counted against anyone),
    probes exempt, refusals in ``/metrics``."""
    data_dir = tmp_path / "data"
    shop, batch, ops = (
        _add(data_dir, n, s) for n, s in (("shop", "rank"), ("batch", "rank"), ("ops", "admin"))
    )
    limits = {"batch": {"per_second": 0.01, "burst": 1}}
    with serve(
        pipeline="thread",
        data_dir=data_dir,
        rate_limit_per_second=0.01,
        rate_limit_burst=3,
        rate_limit_keys=limits,
    ) as api:
        shop_codes = [
            api.post("/v1/rank", json=RANK, headers=_h(shop)).status_code for _ in range(4)
        ]
        assert shop_codes == [200, 200, 200, 429]
        batch_codes = [
            api.post("/v1/rank", json=RANK, headers=_h(batch)).status_code for _ in range(2)
        ]
        assert batch_codes == [200, 429]
        refused = api.post("/v1/rank", json=RANK, headers=_h(batch))
        assert int(refused.headers["retry-after"]) >= 50  # a token back in 100 s
        assert refused.json()["type"].endswith("/rate-limited")
        assert api.post("/v1/rank", json=RANK, headers=_h("rk_wrong")).status_code == 401
        assert [api.get("/healthz").status_code for _ in range(5)] == [200] * 5
        assert _metric(api, ops, "recloop_rejected_total", reason="rate-limited") == 3
