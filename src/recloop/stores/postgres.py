"""PostgreSQL backends: the same protocols as the SQLite ones, for several machines.

All loops share a handful of tables, keyed by loop name. Log offsets and joined seqs are
per loop and gap-free: an append takes a per-loop advisory transaction lock, so offsets
are assigned in commit order and a reader never skips a record committed late.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

import orjson
import psycopg

from recloop.core.errors import DuplicateEventError, UnknownModelError
from recloop.core.protocols import LogRecord, ModelVersion
from recloop.core.types import (
    Activation,
    DeadLetter,
    Decision,
    JoinedExample,
    LoggedDecision,
    Reward,
)
from recloop.log.codec import decode_decision, decode_reward, encode_decision
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
CREATE TABLE IF NOT EXISTS recloop_models (
    loop TEXT NOT NULL, version BIGINT NOT NULL, created DOUBLE PRECISION NOT NULL,
    sha256 TEXT NOT NULL, meta BYTEA NOT NULL, blob BYTEA NOT NULL, PRIMARY KEY (loop, version));
CREATE TABLE IF NOT EXISTS recloop_model_pin (loop TEXT PRIMARY KEY, version BIGINT NOT NULL);
"""


def _lock_key(loop: str, what: str) -> int:
    digest = hashlib.blake2b(f"recloop:{what}:{loop}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class _Base:
    def __init__(self, url: str, loop: str) -> None:
        self.loop = loop
        self._conn = psycopg.connect(url, autocommit=True)
        self._lock = threading.RLock()
        with self._lock, self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key("", "schema"),))
            self._conn.execute(SCHEMA)

    def exclusive(self, across_processes: bool = True) -> AbstractContextManager[Any]:
        return self._lock

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class _RollBack(Exception):
    """Makes psycopg's transaction block roll back."""


class PostgresEventLog(KeyedAppends, ExclusiveLog, _Base):
    def __init__(self, url: str, loop: str) -> None:
        super().__init__(url, loop)
        self._depth = 0
        self._tx: AbstractContextManager[psycopg.Transaction] | None = None

    def _begin(self) -> None:
        """A transaction holding the loop's advisory lock, before the caller stamps."""
        tx = self._conn.transaction()
        tx.__enter__()
        self._tx = tx
        self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(self.loop, "log"),))

    def _end(self, commit: bool) -> None:
        tx, self._tx = self._tx, None
        assert tx is not None
        if commit:
            tx.__exit__(None, None, None)
        else:
            error = _RollBack()
            tx.__exit__(type(error), error, None)

    def _append(
        self,
        kind: str,
        event_id: str,
        ts: float,
        dedup: str | None,
        body: bytes,
        deferred: bool = False,
    ) -> int:
        with self._lock:
            try:
                with self._conn.transaction():
                    self._conn.execute(
                        "SELECT pg_advisory_xact_lock(%s)", (_lock_key(self.loop, "log"),)
                    )
                    row = self._conn.execute(
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

    def _by_key(self, key: str, columns: str) -> tuple[Any, ...] | None:
        with self._lock:
            return self._conn.execute(
                f"SELECT {columns} FROM recloop_events WHERE loop = %s AND dedup_key = %s",
                (self.loop, key),
            ).fetchone()

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
        with self._lock:
            rows = self._conn.execute(
                "SELECT pos, kind, event_id, ts, deferred, body FROM recloop_events "
                "WHERE loop = %s AND pos > %s ORDER BY pos LIMIT %s",
                (self.loop, after, limit),
            ).fetchall()
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
        with self._lock:
            row = self._conn.execute(
                "SELECT COALESCE(MAX(pos), 0) FROM recloop_events WHERE loop = %s", (self.loop,)
            ).fetchone()
        return int(row[0]) if row else 0

    def dead_letter(self, letter: DeadLetter) -> None:
        with self._lock:
            _insert_letters(self._conn, self.loop, [letter])

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT reason, event_id, ts, body, source_offset FROM recloop_dead_letters "
                "WHERE loop = %s ORDER BY id DESC LIMIT %s",
                (self.loop, limit),
            ).fetchall()
        return [DeadLetter(r[0], r[1], r[2], orjson.loads(bytes(r[3])), r[4]) for r in rows]

    def count(self, kind: str) -> int:
        with self._lock:
            if kind == "dead_letter":
                row = self._conn.execute(
                    "SELECT COUNT(*) FROM recloop_dead_letters WHERE loop = %s", (self.loop,)
                ).fetchone()
            else:
                row = self._conn.execute(
                    "SELECT COUNT(*) FROM recloop_events WHERE loop = %s AND kind = %s",
                    (self.loop, kind),
                ).fetchone()
        return int(row[0]) if row else 0

    def maintenance(self) -> None:
        """Nothing to do: PostgreSQL checkpoints and vacuums by itself."""


def _insert_letters(
    conn: psycopg.Connection[Any], loop: str, letters: Sequence[DeadLetter]
) -> None:
    for d in letters:
        conn.execute(
            "INSERT INTO recloop_dead_letters(loop, reason, event_id, ts, body, source_offset) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (loop, source_offset) DO NOTHING",
            (loop, d.reason, d.event_id, d.timestamp, orjson.dumps(d.payload), d.source_offset),
        )


class PostgresJoinedStore(JoinedIteration, _Base):
    def commit_joined(
        self,
        examples: Sequence[JoinedExample],
        offsets: dict[str, int],
        letters: Sequence[DeadLetter],
    ) -> list[JoinedExample]:
        inserted: list[JoinedExample] = []
        with self._lock, self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(self.loop, "join"),))
            row = self._conn.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM recloop_joined WHERE loop = %s", (self.loop,)
            ).fetchone()
            seq = int(row[0]) if row else 0
            for e in examples:
                seq += 1
                cur = self._conn.execute(
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
            _insert_letters(self._conn, self.loop, letters)
            for name, value in offsets.items():
                self._conn.execute(
                    "INSERT INTO recloop_offsets(loop, name, value) VALUES (%s, %s, %s) "
                    "ON CONFLICT (loop, name) DO UPDATE SET value = EXCLUDED.value",
                    (self.loop, name, value),
                )
        return inserted

    def offset(self, name: str) -> int:
        with self._lock:
            row = self._conn.execute(
                "SELECT value FROM recloop_offsets WHERE loop = %s AND name = %s",
                (self.loop, name),
            ).fetchone()
        return 0 if row is None else int(row[0])

    def is_joined(self, event_id: str) -> bool:
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM recloop_joined WHERE loop = %s AND event_id = %s",
                (self.loop, event_id),
            ).fetchone()
        return row is not None

    def read(self, after: int, limit: int) -> list[JoinedExample]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, joined_at, reward, n_rewards, used_default, decision "
                "FROM recloop_joined WHERE loop = %s AND seq > %s ORDER BY seq LIMIT %s",
                (self.loop, after, limit),
            ).fetchall()
        return [
            JoinedExample(decode_decision(bytes(r[5])), r[2], r[3], bool(r[4]), r[1], seq=r[0])
            for r in rows
        ]

    def count(self) -> int:
        with self._lock:
            row = self._conn.execute(
                "SELECT COUNT(*) FROM recloop_joined WHERE loop = %s", (self.loop,)
            ).fetchone()
        return int(row[0]) if row else 0

    def end_seq(self) -> int:
        with self._lock:
            row = self._conn.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM recloop_joined WHERE loop = %s", (self.loop,)
            ).fetchone()
        return int(row[0]) if row else 0

    def delete_joined(self, through_seq: int, joined_before: float) -> int:
        with self._lock:
            cur = self._conn.execute(
                "DELETE FROM recloop_joined WHERE loop = %s AND seq <= %s AND joined_at < %s "
                "AND seq < (SELECT MAX(seq) FROM recloop_joined WHERE loop = %s)",
                (self.loop, through_seq, joined_before, self.loop),
            )
        return int(cur.rowcount)

    def get_state(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT value FROM recloop_state WHERE loop = %s AND key = %s", (self.loop, key)
            ).fetchone()
        return None if row is None else str(row[0])

    def set_state(self, key: str, value: str) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO recloop_state(loop, key, value) VALUES (%s, %s, %s) "
                "ON CONFLICT (loop, key) DO UPDATE SET value = EXCLUDED.value",
                (self.loop, key, value),
            )

    def delete_state(self, key: str) -> None:
        with self._lock:
            self._conn.execute(
                "DELETE FROM recloop_state WHERE loop = %s AND key = %s", (self.loop, key)
            )

    def states(self, prefix: str) -> dict[str, str]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT key, value FROM recloop_state WHERE loop = %s AND starts_with(key, %s) "
                "ORDER BY key",
                (self.loop, prefix),
            ).fetchall()
        return {str(k): str(v) for k, v in rows}


def _version(row: Sequence[Any]) -> ModelVersion:
    return ModelVersion(str(row[0]), float(row[1]), str(row[2]), orjson.loads(bytes(row[3])))


class PostgresModelStore(_Base):
    def __init__(self, url: str, loop: str, keep: int = 200) -> None:
        super().__init__(url, loop)
        self.keep = keep

    def put(self, blob: bytes, meta: Mapping[str, Any]) -> ModelVersion:
        digest = hashlib.sha256(blob).hexdigest()
        with self._lock, self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(self.loop, "model"),))
            row = self._conn.execute(
                "INSERT INTO recloop_models(loop, version, created, sha256, meta, blob) "
                "SELECT %s, COALESCE(MAX(version), 0) + 1, %s, %s, %s, %s FROM recloop_models "
                "WHERE loop = %s RETURNING version, created, sha256, meta",
                (self.loop, time.time(), digest, orjson.dumps(dict(meta)), blob, self.loop),
            ).fetchone()
            assert row is not None
            self._conn.execute(
                "DELETE FROM recloop_models WHERE loop = %s AND version <= %s AND version NOT IN "
                "(SELECT version FROM recloop_model_pin WHERE loop = %s)",
                (self.loop, int(row[0]) - self.keep, self.loop),
            )
        return _version(row)

    def get(self, version: str) -> tuple[ModelVersion, bytes]:
        if not version.isdigit():
            raise UnknownModelError(f"no model version {version!r}")
        with self._lock:
            row = self._conn.execute(
                "SELECT version, created, sha256, meta, blob FROM recloop_models "
                "WHERE loop = %s AND version = %s",
                (self.loop, int(version)),
            ).fetchone()
        if row is None:
            raise UnknownModelError(f"no model version {version!r}")
        return _version(row[:4]), bytes(row[4])

    def newest(self) -> ModelVersion | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT version, created, sha256, meta FROM recloop_models WHERE loop = %s "
                "ORDER BY version DESC LIMIT 1",
                (self.loop,),
            ).fetchone()
        return None if row is None else _version(row)

    def pinned(self) -> str | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT version FROM recloop_model_pin WHERE loop = %s", (self.loop,)
            ).fetchone()
        return None if row is None else str(row[0])

    def latest(self) -> ModelVersion | None:
        pinned = self.pinned()
        return self.get(pinned)[0] if pinned is not None else self.newest()

    def activate(self, version: str) -> None:
        self.get(version)
        with self._lock:
            self._conn.execute(
                "INSERT INTO recloop_model_pin(loop, version) VALUES (%s, %s) "
                "ON CONFLICT (loop) DO UPDATE SET version = EXCLUDED.version",
                (self.loop, int(version)),
            )

    def follow_newest(self) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM recloop_model_pin WHERE loop = %s", (self.loop,))

    def versions(self, limit: int = 100) -> list[ModelVersion]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT version, created, sha256, meta FROM recloop_models WHERE loop = %s "
                "ORDER BY version DESC LIMIT %s",
                (self.loop, limit),
            ).fetchall()
        return [_version(r) for r in rows]


class PostgresLease:
    """One pipeline per loop across machines: a session advisory lock, released by the
    server when the holder's connection ends (including a killed process)."""

    def __init__(self, url: str, loop: str, wait_seconds: float) -> None:
        from recloop.learning.lease import LeaseBusyError

        self._conn: psycopg.Connection[Any] | None = psycopg.connect(url, autocommit=True)
        key = _lock_key(loop, "pipeline")
        deadline = time.monotonic() + wait_seconds
        while True:
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            if row is not None and row[0]:
                break
            if time.monotonic() >= deadline:
                self._conn.close()
                raise LeaseBusyError(
                    f"another process runs the pipeline of loop {loop!r} on {url} "
                    f"(advisory lock held for {wait_seconds}s)"
                )
            time.sleep(0.05)

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()  # ends the session: the lock goes with it
            self._conn = None
