"""Forgetting and raw-log retention on a loop's PostgreSQL tables.

The same rules as on SQLite (``forget_common``): deleting from the event log takes the
loop's ``log`` advisory lock, which appends take before they compute ``MAX(pos) + 1``, and
deleting joined examples takes the ``join`` lock of ``commit_joined``, so neither races a
writer in another process. Each is one transaction, idempotent, so it is retried as a
whole when PostgreSQL restarts under it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from recloop.stores.forget_common import (
    REPLAY_KEY,
    TOMBSTONE,
    LoopForgetCounts,
    MatchBody,
    forget_key,
)
from recloop.stores.postgres import SCHEMA, SEQ_FLOOR
from recloop.stores.postgres_db import Conn, Database, lock_key

SCAN = 1000
RAW_BATCH = 5000


def _query(sql: str, params: tuple[Any, ...]) -> Callable[[Conn], list[tuple[Any, ...]]]:
    return lambda conn: conn.execute(sql, params).fetchall()


class PostgresLogEraser:
    backend = "postgres"

    def __init__(self, url: str, loop: str) -> None:
        self.loop = loop
        self._db = Database(url, SCHEMA, f"recloop-eraser-{loop}")

    def find_events(self, needle: bytes, match: MatchBody) -> set[str]:
        found: set[str] = set()
        scans = (
            "SELECT pos, event_id, body FROM recloop_events WHERE loop = %s AND pos > %s "
            "AND kind = 'decision' AND position(%s::bytea in body) > 0 ORDER BY pos LIMIT %s",
            "SELECT seq, event_id, decision FROM recloop_joined WHERE loop = %s AND seq > %s "
            "AND position(%s::bytea in decision) > 0 ORDER BY seq LIMIT %s",
        )
        for sql in scans:
            after = 0
            while True:
                rows = self._db.read(_query(sql, (self.loop, after, needle, SCAN)))
                found.update(str(eid) for _, eid, body in rows if match(bytes(body)))
                if len(rows) < SCAN:
                    break
                after = int(rows[-1][0])
        return found

    def forget(self, event_ids: Sequence[str], now: float) -> LoopForgetCounts:
        ids = sorted(set(event_ids))
        loop = self.loop

        def joined(conn: Conn) -> int:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(loop, "join"),))
            end = conn.execute(
                "SELECT COALESCE(MAX(pos), 0) FROM recloop_events WHERE loop = %s", (loop,)
            ).fetchone()
            log_end = int(end[0]) if end else 0
            for e in ids:
                conn.execute(
                    "INSERT INTO recloop_forgotten(loop, key, log_end, at) VALUES (%s, %s, %s, "
                    "%s) ON CONFLICT (loop, key) DO NOTHING",
                    (loop, forget_key(e), log_end, now),
                )
            conn.execute(  # the newest seq stays taken, whichever example goes
                "INSERT INTO recloop_offsets(loop, name, value) SELECT %s, %s, MAX(seq) "
                "FROM recloop_joined WHERE loop = %s HAVING MAX(seq) IS NOT NULL "
                "ON CONFLICT (loop, name) DO UPDATE SET value = "
                "GREATEST(recloop_offsets.value, EXCLUDED.value)",
                (loop, SEQ_FLOOR, loop),
            )
            cur = conn.execute(
                "DELETE FROM recloop_joined WHERE loop = %s AND event_id = ANY(%s)", (loop, ids)
            )
            conn.execute(
                "DELETE FROM recloop_forgotten WHERE loop = %s AND log_end <= (SELECT value "
                "FROM recloop_offsets WHERE loop = %s AND name = %s)",
                (loop, loop, REPLAY_KEY),
            )
            return int(cur.rowcount)

        def log(conn: Conn) -> LoopForgetCounts:
            counts = LoopForgetCounts()
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(loop, "log"),))
            end = conn.execute(
                "SELECT COALESCE(MAX(pos), 0) FROM recloop_events WHERE loop = %s", (loop,)
            ).fetchone()
            newest = int(end[0]) if end else 0
            for kind, n in conn.execute(
                "SELECT kind, COUNT(*) FROM recloop_events WHERE loop = %s "
                "AND event_id = ANY(%s) AND kind != %s GROUP BY kind",
                (loop, ids, TOMBSTONE),
            ).fetchall():
                if kind == "decision":
                    counts.decisions += int(n)
                elif kind == "reward":
                    counts.rewards += int(n)
                elif kind == "activation":
                    counts.activations += int(n)
            conn.execute(
                "DELETE FROM recloop_events WHERE loop = %s AND event_id = ANY(%s) AND pos != %s",
                (loop, ids, newest),
            )
            conn.execute(  # the newest row stays, emptied: its position is not reused
                "UPDATE recloop_events SET kind = %s, event_id = '', dedup_key = NULL, "
                "deferred = false, body = ''::bytea WHERE loop = %s AND pos = %s "
                "AND event_id = ANY(%s)",
                (TOMBSTONE, loop, newest, ids),
            )
            conn.execute(
                "DELETE FROM recloop_events WHERE loop = %s AND kind = %s AND pos != %s",
                (loop, TOMBSTONE, newest),
            )
            cur = conn.execute(
                "DELETE FROM recloop_dead_letters WHERE loop = %s AND event_id = ANY(%s)",
                (loop, ids),
            )
            counts.dead_letters = int(cur.rowcount)
            return counts

        n_joined = self._db.write(joined, idempotent=True)
        counts = self._db.write(log, idempotent=True)
        counts.joined = n_joined
        return counts

    def delete_raw(self, before: float) -> int:
        loop = self.loop

        def batch(conn: Conn) -> tuple[int, bool]:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(loop, "log"),))
            row = conn.execute(
                "SELECT (SELECT value FROM recloop_offsets WHERE loop = %s AND name = %s), "
                "(SELECT MAX(pos) FROM recloop_events WHERE loop = %s), "
                "(SELECT MIN(pos) FROM recloop_events WHERE loop = %s), "
                "(SELECT pos FROM recloop_events WHERE loop = %s AND ts >= %s "
                "ORDER BY pos LIMIT 1)",
                (loop, REPLAY_KEY, loop, loop, loop, before),
            ).fetchone()
            assert row is not None
            replay, newest, first, young = (None if v is None else int(v) for v in row)
            if replay is None or newest is None or first is None:
                return 0, True
            bound = min(replay, newest - 1, young - 1 if young is not None else newest)
            if first > bound:
                n = 0
                if young is None and replay >= newest:  # the newest goes too, as a tombstone
                    n = conn.execute(
                        "UPDATE recloop_events SET kind = %s, event_id = '', dedup_key = NULL, "
                        "deferred = false, body = ''::bytea WHERE loop = %s AND pos = %s "
                        "AND kind != %s",
                        (TOMBSTONE, loop, newest, TOMBSTONE),
                    ).rowcount
                cur = conn.execute(
                    "DELETE FROM recloop_dead_letters WHERE loop = %s AND ts < %s", (loop, before)
                )
                return int(n) + int(cur.rowcount), True
            cur = conn.execute(
                "DELETE FROM recloop_events WHERE loop = %s AND pos <= %s",
                (loop, min(bound, first + RAW_BATCH)),
            )
            return int(cur.rowcount), False

        def prune(conn: Conn) -> None:  # forgotten events no joiner can hold any more
            conn.execute(
                "DELETE FROM recloop_forgotten WHERE loop = %s AND log_end <= (SELECT value "
                "FROM recloop_offsets WHERE loop = %s AND name = %s)",
                (loop, loop, REPLAY_KEY),
            )

        self._db.write(prune, idempotent=True)
        deleted = 0
        while True:
            n, done = self._db.write(batch, idempotent=True)
            deleted += n
            if done:
                return deleted

    def close(self) -> None:
        self._db.close()
