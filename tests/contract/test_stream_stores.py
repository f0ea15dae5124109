"""Every recommendation store backend through one suite (SQLite, real Redis)."""

from __future__ import annotations

import os
import uuid

import pytest

from recloop.core.types import Recommendation
from recloop.stores.redis_stream import RedisRecommendationStore
from recloop.stores.sqlite_stream import SqliteRecommendationStore

REDIS_URL = os.environ.get("RECLOOP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_reachable() -> str | None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as exc:  # any failure to reach it is a reason to skip, given clearly
        return f"Redis not reachable at {REDIS_URL}: {exc}"
    return None


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = SqliteRecommendationStore(tmp_path / "recs.db")
        yield s
        s.close()
        return
    reason = _redis_reachable()
    if reason:
        pytest.skip(reason)
    s = RedisRecommendationStore(REDIS_URL, prefix=f"recloop-test:{uuid.uuid4().hex}:")
    yield s
    s.clear()
    s.close()


def rec(user, version, items=("a", "b")):
    return Recommendation(user, tuple(items), (2.0, 1.0), version, 100.0 + version, "pop")


def test_put_get_round_trip(store):
    assert store.get("u1") is None
    assert store.put_many([rec("u1", 3), rec("u2", 1, ("c",))], written_at=5.0) == 2
    got, written = store.get("u1")
    assert got == rec("u1", 3) and written == 5.0
    assert store.get("u2")[0].items == ("c",)


def test_an_older_state_version_never_replaces_a_newer_one(store):
    store.put_many([rec("u", 5, ("new",))], 1.0)
    assert store.put_many([rec("u", 4, ("old",))], 2.0) == 0
    assert store.get("u")[0].items == ("new",)
    assert store.put_many([rec("u", 5, ("same-version",))], 3.0) == 1  # replay: idempotent
    assert store.put_many([rec("u", 6, ("newer",))], 4.0) == 1
    assert store.get("u")[0].items == ("newer",)


def test_popular_fallback(store):
    assert store.get_popular() is None
    popular = Recommendation("*", ("x", "y"), (3.0, 1.0), 0, 50.0, "popularity", "popular")
    store.put_popular(popular, 7.0)
    got, written = store.get_popular()
    assert got == popular and written == 7.0
