"""PostgreSQL backends: the same protocols as the SQLite ones, for several machines.

All loops share a handful of tables, keyed by loop name. Log offsets and joined seqs are
per loop and gap-free: an append takes a per-loop advisory transaction lock, so offsets
are assigned in commit order and a reader never skips a record committed late.

Connections come from ``postgres_db.Database``: a restart of PostgreSQL costs the requests
made while it is away (503, Retry-After), and the stores carry on by themselves after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson
import psycopg

from recloop.core.errors import DuplicateEventError
from recloop.core.protocols import LogRecord
from recloop.core.types import (
    Activation,
    DeadLetter,
    Decision,
    JoinedExample,
    LoggedDecision,
    Reward,
)
from recloop.log.codec import decode_decision, decode_reward, encode_decision
from recloop.stores.forget_common import REPLAY_KEY, TOMBSTONE, forget_key
from recloop.stores.postgres_db import (
    Conn,
    PostgresStore,
    lock_key,
)
from recloop.stores.postgres_models import PostgresModelStore
from recloop.stores.shared import (
    ExclusiveLog,
    JoinedIteration,
    KeyedAppends,
    activation_key,
    decision_key,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS recloop_events (
    loop TEXT NOT NULL, pos BIGINT NOT NULL, kind TEXT NOT NULL, event_id TEXT NOT NULL,
    ts DOUBLE PRECISION NOT NULL, dedup_key TEXT, deferred BOOLEAN NOT NULL, body BYTEA NOT NULL,
    PRIMARY KEY (loop, pos), UNIQUE (loop, dedup_key));
CREATE TABLE IF NOT EXISTS recloop_dead_letters (
    id BIGSERIAL PRIMARY KEY, loop TEXT NOT NULL, reason TEXT NOT NULL, event_id TEXT NOT NULL,
    ts DOUBLE PRECISION NOT NULL, body BYTEA NOT NULL, source_offset BIGINT,
    UNIQUE (loop, source_offset));
CREATE TABLE IF NOT EXISTS recloop_joined (
    loop TEXT NOT NULL, seq BIGINT NOT NULL, event_id TEXT NOT NULL,
    joined_at DOUBLE PRECISION NOT NULL, reward DOUBLE PRECISION NOT NULL,
    n_rewards INTEGER NOT NULL, used_default BOOLEAN NOT NULL, decision BYTEA NOT NULL,
    PRIMARY KEY (loop, seq), UNIQUE (loop, event_id));
CREATE TABLE IF NOT EXISTS recloop_offsets (
    loop TEXT NOT NULL, name TEXT NOT NULL, value BIGINT NOT NULL, PRIMARY KEY (loop, name));
CREATE TABLE IF NOT EXISTS recloop_state (
    loop TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (loop, key));
CREATE TABLE IF NOT EXISTS recloop_forgotten (
    loop TEXT NOT NULL, key TEXT NOT NULL, log_end BIGINT NOT NULL,
    at DOUBLE PRECISION NOT NULL, PRIMARY KEY (loop, key));
"""
SEQ_FLOOR = "joined.seq_floor"
"""An offsets row: the highest joined seq ever assigned, kept when forgetting deletes the
newest example (seqs are ``MAX + 1``: without it, that seq would be handed out again)."""


@dataclass(frozen=True, slots=True)
class _Record:
    kind: str
    event_id: str
    ts: float
    dedup: str | None
    deferred: bool
    body: bytes


def _logged(conn: Conn, loop: str, pos: int, r: _Record) -> bool:
    """Whether ``r`` is the record at ``pos``: appends are serialised by the loop's lock,
    so a committed append is there, and one that was not committed is not."""
    row = conn.execute(
        "SELECT 1 FROM recloop_events WHERE loop = %s AND pos = %s AND kind = %s "
        "AND event_id = %s AND ts = %s AND body = %s",
        (loop, pos, r.kind, r.event_id, r.ts, r.body),
    ).fetchone()
    return row is not None


class PostgresEventLog(KeyedAppends, ExclusiveLog, PostgresStore):
    def __init__(self, url: str, loop: str) -> None:
        super().__init__(url, loop, SCHEMA)
        self._depth = 0
        self._pending: list[tuple[int, _Record]] = []
        """Appended in the open ``exclusive()`` transaction: what confirms its commit."""

    def _begin(self) -> None:
        """A transaction holding the loop's advisory lock, before the caller stamps."""
        self._pending = []
        key = lock_key(self.loop, "log")
        self._db.begin(lambda c: c.execute("SELECT pg_advisory_xact_lock(%s)", (key,)))

    def _end(self, commit: bool) -> None:
        pending, self._pending = self._pending, []

        def confirm(conn: Conn) -> bool:
            return all(_logged(conn, self.loop, pos, r) for pos, r in pending)

        self._db.end(commit, confirm if pending else None)

    def _append(
        self,
        kind: str,
        event_id: str,
        ts: float,
        dedup: str | None,
        body: bytes,
        deferred: bool = False,
    ) -> int:
        """Append under the loop's lock. A COMMIT that got no answer is settled by looking
        at the offset the INSERT returned: the record is written once, never twice."""
        record = _Record(kind, event_id, ts, dedup, deferred, body)

        def insert(conn: Conn) -> int:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(self.loop, "log"),))
            try:
                row = conn.execute(
                    "INSERT INTO recloop_events(loop, pos, kind, event_id, ts, dedup_key, "
                    "deferred, body) SELECT %s, COALESCE(MAX(pos), 0) + 1, %s, %s, %s, %s, "
                    "%s, %s FROM recloop_events WHERE loop = %s RETURNING pos",
                    (self.loop, kind, event_id, ts, dedup, deferred, body, self.loop),
                ).fetchone()
            except psycopg.errors.UniqueViolation as exc:
                raise DuplicateEventError(
                    f"{kind} for event {event_id!r} is already logged"
                ) from exc
            assert row is not None
            return int(row[0])

        with self._lock:
            pos = self._db.write(insert, confirm=lambda c, p: _logged(c, self.loop, p, record))
            if self._db.pinned:
                self._pending.append((pos, record))
        return pos

    def _by_key(self, key: str, columns: str) -> tuple[Any, ...] | None:
        return self._one(
            f"SELECT {columns} FROM recloop_events WHERE loop = %s AND dedup_key = %s",
            (self.loop, key),
        )

    def decision_time(self, event_id: str) -> tuple[float, bool, float | None] | None:
        row = self._by_key(decision_key(event_id), "ts, deferred")
        if row is None:
            return None
        act = self._by_key(activation_key(event_id), "ts")
        return float(row[0]), bool(row[1]), None if act is None else float(act[0])

    def get_decision(self, event_id: str) -> Decision | None:
        row = self._by_key(decision_key(event_id), "body")
        return None if row is None else decode_decision(bytes(row[0]))

    def read(self, after: int, limit: int) -> list[LogRecord]:
        rows = self._all(
            "SELECT pos, kind, event_id, ts, deferred, body FROM recloop_events "
            "WHERE loop = %s AND pos > %s AND kind != %s ORDER BY pos LIMIT %s",
            (self.loop, after, TOMBSTONE, limit),
        )
        out: list[LogRecord] = []
        for pos, kind, event_id, ts, deferred, body in rows:
            event: LoggedDecision | Reward | Activation
            if kind == "decision":
                event = LoggedDecision(event_id, ts, bool(deferred), bytes(body))
            elif kind == "reward":
                event = decode_reward(event_id, ts, bytes(body))
            else:
                event = Activation(event_id, ts)
            out.append(LogRecord(int(pos), kind, event))
        return out

    def end_offset(self) -> int:
        return self._count(
            "SELECT COALESCE(MAX(pos), 0) FROM recloop_events WHERE loop = %s", (self.loop,)
        )

    def dead_letter(self, letter: DeadLetter) -> None:
        self._db.write(lambda c: _insert_letters(c, self.loop, [letter]))

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        rows = self._all(
            "SELECT reason, event_id, ts, body, source_offset FROM recloop_dead_letters "
            "WHERE loop = %s ORDER BY id DESC LIMIT %s",
            (self.loop, limit),
        )
        return [DeadLetter(r[0], r[1], r[2], orjson.loads(bytes(r[3])), r[4]) for r in rows]

    def count(self, kind: str) -> int:
        if kind == "dead_letter":
            return self._count(
                "SELECT COUNT(*) FROM recloop_dead_letters WHERE loop = %s", (self.loop,)
            )
        return self._count(
            "SELECT COUNT(*) FROM recloop_events WHERE loop = %s AND kind = %s",
            (self.loop, kind),
        )

    def maintenance(self) -> None:
        """Nothing to do: PostgreSQL checkpoints and vacuums by itself."""


def _forgotten(conn: Conn, loop: str, event_ids: Sequence[str]) -> set[str]:
    """Which of these events were forgotten (``recloop_forgotten``); one query, and none
    at all while nothing is listed for the loop."""
    if not event_ids:
        return set()
    listed = conn.execute("SELECT 1 FROM recloop_forgotten WHERE loop = %s LIMIT 1", (loop,))
    if listed.fetchone() is None:
        return set()
    keys = {forget_key(e): e for e in event_ids}
    rows = conn.execute(
        "SELECT key FROM recloop_forgotten WHERE loop = %s AND key = ANY(%s)",
        (loop, list(keys)),
    ).fetchall()
    return {keys[str(r[0])] for r in rows}


def _insert_letters(conn: Conn, loop: str, letters: Sequence[DeadLetter]) -> None:
    for d in letters:
        conn.execute(
            "INSERT INTO recloop_dead_letters(loop, reason, event_id, ts, body, source_offset) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (loop, source_offset) DO NOTHING",
            (loop, d.reason, d.event_id, d.timestamp, orjson.dumps(d.payload), d.source_offset),
        )


class PostgresJoinedStore(JoinedIteration, PostgresStore):
    def __init__(self, url: str, loop: str) -> None:
        super().__init__(url, loop, SCHEMA)

    def commit_joined(
        self,
        examples: Sequence[JoinedExample],
        offsets: dict[str, int],
        letters: Sequence[DeadLetter],
    ) -> list[JoinedExample]:
        """One transaction; safe to run twice (joined examples are unique per event,
        offsets are set, letters unique per source offset), so it is retried even when
        its COMMIT got no answer: a second run then returns no example, and the learner
        reads them from the store."""

        def work(conn: Conn) -> list[JoinedExample]:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(self.loop, "join"),))
            row = conn.execute(
                "SELECT GREATEST(COALESCE(MAX(seq), 0), (SELECT COALESCE(MAX(value), 0) FROM "
                "recloop_offsets WHERE loop = %s AND name = %s)) FROM recloop_joined "
                "WHERE loop = %s",
                (self.loop, SEQ_FLOOR, self.loop),
            ).fetchone()
            seq = int(row[0]) if row else 0
            inserted: list[JoinedExample] = []
            ids = [e.decision.event_id for e in examples] + [d.event_id for d in letters]
            gone = _forgotten(conn, self.loop, ids)  # forgotten while the joiner held them
            for e in (e for e in examples if e.decision.event_id not in gone):
                seq += 1
                cur = conn.execute(
                    "INSERT INTO recloop_joined(loop, seq, event_id, joined_at, reward, "
                    "n_rewards, used_default, decision) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (loop, event_id) DO NOTHING",
                    (
                        self.loop,
                        seq,
                        e.decision.event_id,
                        e.joined_at,
                        e.reward,
                        e.n_rewards,
                        e.used_default,
                        e.body or encode_decision(e.decision),
                    ),
                )
                if cur.rowcount == 1:
                    inserted.append(replace(e, seq=seq))
                else:
                    seq -= 1  # already joined: keep seq gap-free
            _insert_letters(conn, self.loop, [d for d in letters if d.event_id not in gone])
            if REPLAY_KEY in offsets:  # forgotten events no joiner can hold any more
                conn.execute(
                    "DELETE FROM recloop_forgotten WHERE loop = %s AND log_end <= %s",
                    (self.loop, offsets[REPLAY_KEY]),
                )
            for name, value in offsets.items():
                conn.execute(
                    "INSERT INTO recloop_offsets(loop, name, value) VALUES (%s, %s, %s) "
                    "ON CONFLICT (loop, name) DO UPDATE SET value = EXCLUDED.value",
                    (self.loop, name, value),
                )
            return inserted

        return self._db.write(work, idempotent=True)

    def offset(self, name: str) -> int:
        row = self._one(
            "SELECT value FROM recloop_offsets WHERE loop = %s AND name = %s", (self.loop, name)
        )
        return 0 if row is None else int(row[0])

    def is_joined(self, event_id: str) -> bool:
        row = self._one(
            "SELECT 1 FROM recloop_joined WHERE loop = %s AND event_id = %s",
            (self.loop, event_id),
        )
        return row is not None

    def read(self, after: int, limit: int) -> list[JoinedExample]:
        rows = self._all(
            "SELECT seq, joined_at, reward, n_rewards, used_default, decision "
            "FROM recloop_joined WHERE loop = %s AND seq > %s ORDER BY seq LIMIT %s",
            (self.loop, after, limit),
        )
        return [
            JoinedExample(decode_decision(bytes(r[5])), r[2], r[3], bool(r[4]), r[1], seq=r[0])
            for r in rows
        ]

    def count(self) -> int:
        return self._count("SELECT COUNT(*) FROM recloop_joined WHERE loop = %s", (self.loop,))

    def end_seq(self) -> int:
        return self._count(
            "SELECT GREATEST(COALESCE(MAX(seq), 0), (SELECT COALESCE(MAX(value), 0) FROM "
            "recloop_offsets WHERE loop = %s AND name = %s)) FROM recloop_joined "
            "WHERE loop = %s",
            (self.loop, SEQ_FLOOR, self.loop),
        )

    def delete_joined(self, through_seq: int, joined_before: float) -> int:
        def work(conn: Conn) -> int:
            cur = conn.execute(
                "DELETE FROM recloop_joined WHERE loop = %s AND seq <= %s AND joined_at < %s "
                "AND seq < (SELECT MAX(seq) FROM recloop_joined WHERE loop = %s)",
                (self.loop, through_seq, joined_before, self.loop),
            )
            return int(cur.rowcount)

        return self._db.write(work, idempotent=True)

    def get_state(self, key: str) -> str | None:
        row = self._one(
            "SELECT value FROM recloop_state WHERE loop = %s AND key = %s", (self.loop, key)
        )
        return None if row is None else str(row[0])

    def set_state(self, key: str, value: str) -> None:
        self._db.write(
            lambda c: c.execute(
                "INSERT INTO recloop_state(loop, key, value) VALUES (%s, %s, %s) "
                "ON CONFLICT (loop, key) DO UPDATE SET value = EXCLUDED.value",
                (self.loop, key, value),
            ),
            idempotent=True,
        )

    def delete_state(self, key: str) -> None:
        self._db.write(
            lambda c: c.execute(
                "DELETE FROM recloop_state WHERE loop = %s AND key = %s", (self.loop, key)
            ),
            idempotent=True,
        )

    def states(self, prefix: str) -> dict[str, str]:
        rows = self._all(
            "SELECT key, value FROM recloop_state WHERE loop = %s AND starts_with(key, %s) "
            "ORDER BY key",
            (self.loop, prefix),
        )
        return {str(k): str(v) for k, v in rows}


__all__ = [
    "SCHEMA",
    "PostgresEventLog",
    "PostgresJoinedStore",
    "PostgresModelStore",
]
