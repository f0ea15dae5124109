"""Recommendations in Redis: what serving processes on other machines read.

Each user is one hash ``{prefix}{user_id}`` with ``v`` (state version), ``w`` (written at)
and ``b`` (the list as JSON). A Lua script makes the write conditional on the version, so a
replayed or delayed older list never replaces a newer one. Redis on these machines keeps
nothing on disk: the lists are recomputable from the durable log, never the only copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from recloop.core.types import Recommendation

_PUT_IF_NEWER = """
local v = redis.call('HGET', KEYS[1], 'v')
if v and tonumber(v) > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'w', ARGV[2], 'b', ARGV[3])
return 1
"""
POPULAR_KEY = "*popular*"


class RedisRecommendationStore:
    def __init__(self, url: str, prefix: str = "recloop:recs:") -> None:
        import redis

        self._redis: Any = redis.Redis.from_url(url)
        self._prefix = prefix
        self._put = self._redis.register_script(_PUT_IF_NEWER)

    def put_many(self, recs: Sequence[Recommendation], written_at: float) -> int:
        pipe = self._redis.pipeline(transaction=False)
        for r in recs:
            self._put(
                keys=[self._prefix + r.user_id],
                args=[r.state_version, written_at, orjson.dumps(r.to_dict())],
                client=pipe,
            )
        return int(sum(int(x) for x in pipe.execute()))

    def get(self, user_id: str) -> tuple[Recommendation, float] | None:
        body, written = self._redis.hmget(self._prefix + user_id, "b", "w")
        if body is None:
            return None
        return Recommendation.from_dict(orjson.loads(body)), float(written)

    def put_popular(self, rec: Recommendation, written_at: float) -> None:
        self._redis.hset(
            self._prefix + POPULAR_KEY,
            mapping={"v": 0, "w": written_at, "b": orjson.dumps(rec.to_dict())},
        )

    def get_popular(self) -> tuple[Recommendation, float] | None:
        return self.get(POPULAR_KEY)

    def clear(self) -> None:
        """Delete every list under this prefix (tests, re-deployments)."""
        for key in self._redis.scan_iter(match=self._prefix + "*", count=1000):
            self._redis.delete(key)

    def close(self) -> None:
        self._redis.close()
