"""The SQLite event log (``loop.db``, WAL mode): decisions, rewards and activations, each
appended and committed before it is acknowledged. Its files and schema:
:mod:`recloop.stores.sqlite_files`; the joined store: :mod:`recloop.stores.sqlite_joined`.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import orjson

from recloop.core.errors import DuplicateEventError
from recloop.core.protocols import LogRecord
from recloop.core.types import (
    Activation,
    DeadLetter,
    Decision,
    LoggedDecision,
    Reward,
)
from recloop.log.codec import (
    decode_decision,
    decode_reward,
)
from recloop.stores.forget_common import TOMBSTONE
from recloop.stores.shared import (
    ExclusiveLog,
    KeyedAppends,
    activation_key,
    decision_key,
)
from recloop.stores.sqlite_common import Durability, FileIdentity, connect
from recloop.stores.sqlite_files import (
    LETTERS_SCHEMA,
    LOG_SCHEMA,
    insert_letters,
    open_with_schema,
)


class SqliteEventLog(KeyedAppends, ExclusiveLog):
    """The durable log. Each append commits before it returns (acknowledged = durable)."""

    def __init__(self, path: Path, durability: Durability = "process") -> None:
        self._conn = open_with_schema(path, durability, LOG_SCHEMA + LETTERS_SCHEMA)
        self._file = FileIdentity(path, "event log")
        # Appends never pay for a WAL checkpoint (the p99 spike); maintenance() does it
        # from the pipeline thread on its own connection, without blocking appends.
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        self._maintenance_conn = connect(path, durability)
        self._lock = threading.RLock()
        self._depth = 0

    def _begin(self) -> None:
        """BEGIN IMMEDIATE: SQLite's write lock, before the caller stamps its record."""
        self._conn.execute("BEGIN IMMEDIATE")

    def _end(self, commit: bool) -> None:
        self._conn.execute("COMMIT" if commit else "ROLLBACK")
        if commit:
            self._file.check()

    def maintenance(self) -> None:
        """Checkpoint the WAL into the database file (PASSIVE: never blocks writers)."""
        self._maintenance_conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

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
                cur = self._conn.execute(
                    "INSERT INTO events(kind, event_id, ts, dedup_key, deferred, body) "
                    "VALUES (?,?,?,?,?,?)",
                    (kind, event_id, ts, dedup, int(deferred), body),
                )
            except sqlite3.IntegrityError as exc:
                # a retry of a record committed into a file since deleted: not "already
                # logged" (the client would take that for an acknowledgement), lost
                self._file.check()
                raise DuplicateEventError(
                    f"{kind} for event {event_id!r} is already logged"
                ) from exc
            if not self._conn.in_transaction:  # committed on its own: check before the ack
                self._file.check()
            return int(cur.lastrowid or 0)

    def decision_time(self, event_id: str) -> tuple[float, bool, float | None] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT ts, deferred FROM events WHERE dedup_key = ?", (decision_key(event_id),)
            ).fetchone()
            if row is None:
                return None
            act = self._conn.execute(
                "SELECT ts FROM events WHERE dedup_key = ?", (activation_key(event_id),)
            ).fetchone()
        return float(row[0]), bool(row[1]), None if act is None else float(act[0])

    def get_decision(self, event_id: str) -> Decision | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT body FROM events WHERE dedup_key = ?", (decision_key(event_id),)
            ).fetchone()
        return None if row is None else decode_decision(row[0])

    def read(self, after: int, limit: int) -> list[LogRecord]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT offset, kind, event_id, ts, deferred, body FROM events WHERE offset > ? "
                "AND kind != ? ORDER BY offset LIMIT ?",
                (after, TOMBSTONE, limit),
            ).fetchall()
        out: list[LogRecord] = []
        for offset, kind, event_id, ts, deferred, body in rows:
            event: LoggedDecision | Reward | Activation
            if kind == "decision":
                event = LoggedDecision(event_id, ts, bool(deferred), body)
            elif kind == "reward":
                event = decode_reward(event_id, ts, body)
            else:
                event = Activation(event_id, ts)
            out.append(LogRecord(offset, kind, event))
        return out

    def end_offset(self) -> int:
        with self._lock:
            self._file.check()  # readiness reads this: a lost log is not ready
            row = self._conn.execute("SELECT MAX(offset) FROM events").fetchone()
        return int(row[0] or 0)

    def dead_letter(self, letter: DeadLetter) -> None:
        with self._lock:
            insert_letters(self._conn, [letter])

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT reason, event_id, ts, body, source_offset FROM dead_letters "
                "ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [DeadLetter(r[0], r[1], r[2], orjson.loads(r[3]), r[4]) for r in rows]

    def count(self, kind: str) -> int:
        with self._lock:
            if kind == "dead_letter":
                row = self._conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()
            else:
                row = self._conn.execute(
                    "SELECT COUNT(*) FROM events WHERE kind = ?", (kind,)
                ).fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            self._maintenance_conn.close()
