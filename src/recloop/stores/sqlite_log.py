"""SQLite event log (``loop.db``) and joined-example store (``joined.db``), WAL mode.

Two files, so the pipeline's commits of joined rows never touch the pages the serving
process appends decisions to: a commit by another connection invalidates a connection's
page cache for the whole file, and the next decision appended paid for it (README,
"Measurements behind the code"). Dead letters all live in ``loop.db``: the serving
process writes the ones it refuses, the joiner the ones it finds, idempotently by their
source offset.

A data directory made before the split keeps its joined store in ``loop.db``
(:func:`joined_path`).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import orjson

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
from recloop.log.codec import (
    decode_decision,
    decode_reward,
    encode_decision,
)
from recloop.stores.forget_common import REPLAY_KEY, TOMBSTONE, forget_key
from recloop.stores.shared import (
    ExclusiveLog,
    JoinedIteration,
    KeyedAppends,
    activation_key,
    decision_key,
)
from recloop.stores.sqlite_common import Durability, FileIdentity, connect

LOG_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    offset    INTEGER PRIMARY KEY,  -- max+1, never reused: the newest row is never deleted
                                    -- (forgetting leaves a tombstone: forget_common.py)
    kind      TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    ts        REAL NOT NULL,
    dedup_key TEXT UNIQUE,
    deferred  INTEGER NOT NULL DEFAULT 0,
    body      BLOB NOT NULL
);
"""
LETTERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letters (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    reason        TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    ts            REAL NOT NULL,
    body          BLOB NOT NULL,
    source_offset INTEGER UNIQUE
);
"""
JOINED_SCHEMA = """
CREATE TABLE IF NOT EXISTS joined (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     TEXT NOT NULL UNIQUE,
    joined_at    REAL NOT NULL,
    reward       REAL NOT NULL,
    n_rewards    INTEGER NOT NULL,
    used_default INTEGER NOT NULL,
    decision     BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS offsets (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS forgotten (
    key     TEXT PRIMARY KEY,  -- forget_key(event_id): never joined again
    log_end INTEGER NOT NULL,
    at      REAL NOT NULL
);
"""
LOG_FILE = "loop.db"
JOINED_FILE = "joined.db"


def joined_path(loop_dir: Path) -> Path:
    """Where a loop directory keeps its joined store: ``joined.db``, or ``loop.db`` for a
    directory made before the split (its ``loop.db`` has a ``joined`` table and there is
    no ``joined.db``)."""
    split, log_db = loop_dir / JOINED_FILE, loop_dir / LOG_FILE
    if split.exists() or not log_db.exists():
        return split
    conn = sqlite3.connect(f"file:{log_db}?mode=ro", uri=True, timeout=30.0)
    try:
        row = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'joined'"
        ).fetchone()
    finally:
        conn.close()
    return log_db if row is not None else split


def open_joined(loop_dir: Path, durability: Durability = "process") -> SqliteJoinedStore:
    """A loop directory's joined store, its dead letters going to the log's file."""
    return SqliteJoinedStore(joined_path(loop_dir), durability, letters_path=loop_dir / LOG_FILE)


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction (BEGIN IMMEDIATE): committed, or rolled back on any error.

    SQLite rolls a transaction back by itself on some errors (a full disk: SQLITE_FULL);
    a ROLLBACK then would raise "no transaction is active" and hide the real error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _open(path: Path, durability: Durability, schema: str) -> sqlite3.Connection:
    conn = connect(path, durability)
    conn.executescript(schema)
    return conn


def _insert_letters(conn: sqlite3.Connection, letters: Sequence[DeadLetter]) -> None:
    conn.executemany(
        "INSERT OR IGNORE INTO dead_letters(reason, event_id, ts, body, source_offset) "
        "VALUES (?, ?, ?, ?, ?)",
        [
            (d.reason, d.event_id, d.timestamp, orjson.dumps(d.payload), d.source_offset)
            for d in letters
        ],
    )


class SqliteEventLog(KeyedAppends, ExclusiveLog):
    """The durable log. Each append commits before it returns (acknowledged = durable)."""

    def __init__(self, path: Path, durability: Durability = "process") -> None:
        self._conn = _open(path, durability, LOG_SCHEMA + LETTERS_SCHEMA)
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
            _insert_letters(self._conn, [letter])

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


class SqliteJoinedStore(JoinedIteration):
    """Joined examples and consumer offsets; the joiner's offsets commit with its output.

    ``letters_path``: the event log's file, where the joiner's dead letters go (written
    just before the joined rows commit; a replay after a crash in between writes the same
    letters again, which their unique source offsets ignore). None keeps them in this
    store's own file (one file holding both, as before the split, or a store on its own).
    """

    def __init__(
        self, path: Path, durability: Durability = "process", letters_path: Path | None = None
    ) -> None:
        schema = JOINED_SCHEMA
        if letters_path is None or letters_path == path:
            schema += LETTERS_SCHEMA  # the dead letters live here
        self._conn = _open(path, durability, schema)
        self._letters = (
            None
            if letters_path is None or letters_path == path
            else _open(letters_path, durability, LETTERS_SCHEMA)
        )
        self._lock = threading.Lock()

    def commit_joined(
        self,
        examples: Sequence[JoinedExample],
        offsets: dict[str, int],
        letters: Sequence[DeadLetter],
    ) -> list[JoinedExample]:
        """Insert new examples (skipping event ids already joined), dead letters and offsets
        in one transaction; returns the inserted examples with their seq."""
        inserted: list[JoinedExample] = []
        with self._lock:
            letters = [d for d in letters if not self._is_forgotten(d.event_id)]
            if letters and self._letters is not None:
                with _immediate(self._letters):  # its own, committed before the joined rows
                    _insert_letters(self._letters, letters)
                letters = ()
            with _immediate(self._conn):
                guard = self._conn.execute("SELECT 1 FROM forgotten LIMIT 1").fetchone()
                for e in examples:
                    if guard is not None and self._is_forgotten(e.decision.event_id):
                        continue  # its user was forgotten while the joiner held it
                    # not INSERT OR IGNORE: an ignored insert would still consume a seq
                    # number, and consumers rely on seq being gap-free
                    if self._conn.execute(
                        "SELECT 1 FROM joined WHERE event_id = ?", (e.decision.event_id,)
                    ).fetchone():
                        continue
                    cur = self._conn.execute(
                        "INSERT INTO joined(event_id, joined_at, reward, n_rewards, "
                        "used_default, decision) VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            e.decision.event_id,
                            e.joined_at,
                            e.reward,
                            e.n_rewards,
                            int(e.used_default),
                            e.body or encode_decision(e.decision),
                        ),
                    )
                    inserted.append(replace(e, seq=int(cur.lastrowid or 0)))
                if letters:
                    _insert_letters(self._conn, letters)
                if guard is not None and REPLAY_KEY in offsets:  # no joiner holds these now
                    self._conn.execute(
                        "DELETE FROM forgotten WHERE log_end <= ?", (offsets[REPLAY_KEY],)
                    )
                self._conn.executemany(
                    "INSERT INTO offsets(name, value) VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                    list(offsets.items()),
                )
        return inserted

    def _is_forgotten(self, event_id: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM forgotten WHERE key = ?", (forget_key(event_id),)
        ).fetchone()
        return row is not None

    def offset(self, name: str) -> int:
        with self._lock:
            row = self._conn.execute("SELECT value FROM offsets WHERE name = ?", (name,)).fetchone()
        return 0 if row is None else int(row[0])

    def is_joined(self, event_id: str) -> bool:
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM joined WHERE event_id = ?", (event_id,)
            ).fetchone()
        return row is not None

    def read(self, after: int, limit: int) -> list[JoinedExample]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, joined_at, reward, n_rewards, used_default, decision FROM joined "
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()
        return [
            JoinedExample(decode_decision(r[5]), r[2], r[3], bool(r[4]), r[1], seq=r[0])
            for r in rows
        ]

    def count(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT COUNT(*) FROM joined").fetchone()
        return int(row[0])

    def end_seq(self) -> int:
        with self._lock:
            row = self._conn.execute(  # the newest seq ever given: forgetting may delete it
                "SELECT MAX(COALESCE((SELECT MAX(seq) FROM joined), 0), COALESCE((SELECT seq "
                "FROM sqlite_sequence WHERE name = 'joined'), 0))"
            ).fetchone()
        return int(row[0] or 0)

    def delete_joined(self, through_seq: int, joined_before: float) -> int:
        with self._lock:
            cur = self._conn.execute(
                "DELETE FROM joined WHERE seq <= ? AND joined_at < ? "
                "AND seq < (SELECT MAX(seq) FROM joined)",
                (through_seq, joined_before),
            )
        return int(cur.rowcount)

    def get_state(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_state(self, key: str, value: str) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO state(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def delete_state(self, key: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM state WHERE key = ?", (key,))

    def states(self, prefix: str) -> dict[str, str]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT key, value FROM state WHERE key LIKE ? ORDER BY key", (prefix + "%",)
            ).fetchall()
        return {str(k): str(v) for k, v in rows}

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            if self._letters is not None:
                self._letters.close()
