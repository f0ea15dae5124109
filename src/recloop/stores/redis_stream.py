"""Recommendations in Redis: what serving processes on other machines read.

Each user is one hash ``{prefix}{user_id}`` with ``v`` (state version), ``w`` (written at)
and ``b`` (the list as JSON). A Lua script makes the write conditional on the version, so a
replayed or delayed older list never replaces a newer one. Redis on these machines keeps
nothing on disk: the lists are recomputable, never the only copy. The runner finds out that
Redis lost them through a marker among the meta keys (``{prefix without ':'}#meta:{key}``,
outside every user's key, so no user id can collide with one) and rebuilds them from its
state (``recloop.streaming.board``).

Every Redis failure that passes (connection refused or reset, a timeout, Redis still loading
its data, out of memory) is raised as ``StoreUnavailableError`` (reason ``redis``): the web
tier answers it as a 503 problem or falls back, the runner pauses and retries. Timeouts are
short, so a Redis that hangs holds a caller for a second, not forever.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson

from recloop.core.errors import StoreUnavailableError
from recloop.core.types import POPULAR_KEY, Recommendation

_PUT_IF_NEWER = """
local v = redis.call('HGET', KEYS[1], 'v')
if v and tonumber(v) > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'w', ARGV[2], 'b', ARGV[3])
return 1
"""
_SWAP = """
local v = redis.call('GET', KEYS[1])
if ARGV[1] == '' then
  if v then return 0 end
elseif v ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""
T = TypeVar("T")


def _transient(exc: Exception) -> bool:
    """Errors that pass by themselves: Redis down, restarting, loading, or full."""
    import redis.exceptions as rex

    passing = (
        rex.ConnectionError,  # refused, reset; BusyLoadingError (still loading) is one
        rex.TimeoutError,
        rex.OutOfMemoryError,  # maxmemory reached with noeviction
        rex.ReadOnlyError,  # a replica, or a failover under way
        rex.TryAgainError,
        rex.MasterDownError,
    )
    return isinstance(exc, passing)


class RedisRecommendationStore:
    def __init__(
        self,
        url: str,
        prefix: str = "recloop:recs:",
        connect_timeout: float = 0.5,
        timeout: float = 2.0,
    ) -> None:
        import redis

        self._redis: Any = redis.Redis.from_url(
            url, socket_connect_timeout=connect_timeout, socket_timeout=timeout
        )
        self._prefix = prefix
        self._meta = prefix.rstrip(":") + "#meta:"
        self._put = self._redis.register_script(_PUT_IF_NEWER)
        self._swap = self._redis.register_script(_SWAP)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except Exception as exc:
            if _transient(exc):
                raise StoreUnavailableError(
                    f"Redis (recommendations) unavailable ({what}): {exc}", reason="redis"
                ) from exc
            raise

    def put_many(self, recs: Sequence[Recommendation], written_at: float) -> int:
        def run() -> int:
            pipe = self._redis.pipeline(transaction=False)
            for r in recs:
                self._put(
                    keys=[self._prefix + r.user_id],
                    args=[r.state_version, written_at, orjson.dumps(r.to_dict())],
                    client=pipe,
                )
            return int(sum(int(x) for x in pipe.execute()))

        return self._call("write", run)

    def get(self, user_id: str) -> tuple[Recommendation, float] | None:
        body, written = self._call(
            "read", lambda: self._redis.hmget(self._prefix + user_id, "b", "w")
        )
        if body is None:
            return None
        return Recommendation.from_dict(orjson.loads(body)), float(written)

    def delete(self, user_id: str) -> int:
        """Delete one user's list (privacy); returns how many (0 or 1)."""
        return int(self._call("write", lambda: self._redis.delete(self._prefix + user_id)))

    def put_popular(self, rec: Recommendation, written_at: float) -> None:
        mapping = {"v": 0, "w": written_at, "b": orjson.dumps(rec.to_dict())}
        self._call("write", lambda: self._redis.hset(self._prefix + POPULAR_KEY, mapping=mapping))

    def get_popular(self) -> tuple[Recommendation, float] | None:
        return self.get(POPULAR_KEY)

    def get_meta(self, key: str) -> bytes | None:
        value = self._call("read", lambda: self._redis.get(self._meta + key))
        return None if value is None else bytes(value)

    def put_meta(self, key: str, value: bytes) -> None:
        self._call("write", lambda: self._redis.set(self._meta + key, value))

    def swap_meta(self, key: str, expect: bytes | None, value: bytes) -> bool:
        """Set ``key`` to ``value`` only if it holds ``expect`` now (None: absent)."""
        args = [expect or b"", value]
        return bool(self._call("write", lambda: self._swap(keys=[self._meta + key], args=args)))

    def clear(self) -> None:
        """Delete every list and meta key of this prefix (tests, re-deployments)."""
        for pattern in (self._prefix + "*", self._meta + "*"):
            for key in self._redis.scan_iter(match=pattern, count=1000):
                self._redis.delete(key)

    def close(self) -> None:
        self._redis.close()
