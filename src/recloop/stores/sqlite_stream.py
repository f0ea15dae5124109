"""The stream's embedded stores: the behaviour log, state snapshots, recommendations.

Three files, so that appends (the API), snapshots (the runner) and recommendation writes
never wait on each other's write lock: ``events.db`` (append-only log), ``state.db``
(user-state snapshots, popularity, the runner's offset and late events, committed together:
a restart resumes exactly where the last snapshot left off) and ``recs.db``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

from recloop.core.types import POPULAR_KEY, BehaviourEvent, Recommendation
from recloop.stores.sqlite_common import Durability, FileIdentity, connect


class SqliteBehaviourLog:
    """Durable append-only behaviour events; an append returns after its commit."""

    def __init__(self, path: Path, durability: Durability = "process") -> None:
        self._conn = connect(path, durability)
        self._conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS events (
                offset INTEGER PRIMARY KEY AUTOINCREMENT,
                event_id TEXT NOT NULL UNIQUE,
                body BLOB NOT NULL
            );
            """
        )
        self._lock = threading.Lock()
        self._file = FileIdentity(path, "behaviour log")

    def append(self, events: Sequence[BehaviourEvent]) -> list[int | None]:
        out: list[int | None] = []
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for e in events:
                    cur = self._conn.execute(
                        "INSERT OR IGNORE INTO events(event_id, body) VALUES (?, ?)",
                        (e.event_id, orjson.dumps(e.to_dict())),
                    )
                    out.append(int(cur.lastrowid) if cur.rowcount == 1 and cur.lastrowid else None)
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # SQLite may have ended it (a full disk)
                    self._conn.execute("ROLLBACK")
                raise
            self._file.check()
        return out

    def read(self, after: int, limit: int) -> list[tuple[int, BehaviourEvent]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT offset, body FROM events WHERE offset > ? ORDER BY offset LIMIT ?",
                (after, limit),
            ).fetchall()
        return [(int(o), BehaviourEvent.from_dict(orjson.loads(b))) for o, b in rows]

    def last_offset(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT MAX(offset) FROM events").fetchone()
        return int(row[0] or 0)

    def forget_user(self, user_id: str) -> int:
        """Delete every event of one user (privacy); returns how many. Offsets are never
        reused (AUTOINCREMENT), so readers' positions keep their meaning."""
        needle = b'"user_id":' + orjson.dumps(user_id)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                rows = self._conn.execute(
                    "SELECT offset, body FROM events WHERE instr(body, ?) > 0", (needle,)
                ).fetchall()
                gone = [(o,) for o, b in rows if orjson.loads(b).get("user_id") == user_id]
                self._conn.executemany("DELETE FROM events WHERE offset = ?", gone)
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # SQLite may have ended it (a full disk)
                    self._conn.execute("ROLLBACK")
                raise
        return len(gone)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class SqliteStreamState:
    """Snapshots of the processor: changed users, popularity, offset, late events, in one
    transaction."""

    def __init__(self, path: Path, durability: Durability = "process") -> None:
        self._conn = connect(path, durability)
        self._conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS users (user_id TEXT PRIMARY KEY, body BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS dead_letters (
                event_id TEXT PRIMARY KEY, reason TEXT NOT NULL, body BLOB NOT NULL
            );
            """
        )
        self._lock = threading.Lock()

    def save(
        self,
        offset: int,
        users: Iterable[tuple[str, dict[str, Any] | None]],
        meta: dict[str, Any],
        dead: Sequence[tuple[str, BehaviourEvent]] = (),
    ) -> None:
        """``users``: (user_id, snapshot) to upsert, or (user_id, None) to delete."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                upserts, deletes = [], []
                for user_id, body in users:
                    if body is None:
                        deletes.append((user_id,))
                    else:
                        upserts.append((user_id, orjson.dumps(body)))
                self._conn.executemany(
                    "INSERT INTO users(user_id, body) VALUES (?, ?) ON CONFLICT(user_id)"
                    " DO UPDATE SET body = excluded.body",
                    upserts,
                )
                self._conn.executemany("DELETE FROM users WHERE user_id = ?", deletes)
                self._conn.executemany(
                    "INSERT OR IGNORE INTO dead_letters(event_id, reason, body) VALUES (?, ?, ?)",
                    [(e.event_id, reason, orjson.dumps(e.to_dict())) for reason, e in dead],
                )
                meta = {**meta, "offset": offset}
                self._conn.executemany(
                    "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key)"
                    " DO UPDATE SET value = excluded.value",
                    [(k, orjson.dumps(v)) for k, v in meta.items()],
                )
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # SQLite may have ended it (a full disk)
                    self._conn.execute("ROLLBACK")
                raise

    def load(self) -> tuple[int, dict[str, dict[str, Any]], dict[str, Any]]:
        with self._lock:
            users = {
                str(u): orjson.loads(b)
                for u, b in self._conn.execute("SELECT user_id, body FROM users")
            }
            meta = {str(k): orjson.loads(v) for k, v in self._conn.execute("SELECT * FROM meta")}
        return int(meta.pop("offset", 0)), users, meta

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT reason, body FROM dead_letters LIMIT ?", (limit,)
            ).fetchall()
        return [{"reason": r, "event": orjson.loads(b)} for r, b in rows]

    def forget_user(self, user_id: str) -> tuple[int, int]:
        """Delete one user's snapshot and dead-lettered events, and drop them from the
        recent dead letters kept in the meta (privacy), in one transaction; returns
        (users, dead letters) deleted."""
        needle = b'"user_id":' + orjson.dumps(user_id)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                users = self._conn.execute(
                    "DELETE FROM users WHERE user_id = ?", (user_id,)
                ).rowcount
                rows = self._conn.execute(
                    "SELECT event_id, body FROM dead_letters WHERE instr(body, ?) > 0", (needle,)
                ).fetchall()
                gone = [(e,) for e, b in rows if orjson.loads(b).get("user_id") == user_id]
                self._conn.executemany("DELETE FROM dead_letters WHERE event_id = ?", gone)
                row = self._conn.execute(
                    "SELECT value FROM meta WHERE key = 'recent_dead_letters'"
                ).fetchone()
                if row is not None:
                    recent = orjson.loads(row[0])
                    kept = [d for d in recent if d.get("event", {}).get("user_id") != user_id]
                    if len(kept) != len(recent):
                        self._conn.execute(
                            "UPDATE meta SET value = ? WHERE key = 'recent_dead_letters'",
                            (orjson.dumps(kept),),
                        )
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # SQLite may have ended it (a full disk)
                    self._conn.execute("ROLLBACK")
                raise
        return int(users), len(gone)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class SqliteRecommendationStore:
    """One row per user (and one for the popular list); a write never replaces a list made
    from a newer state version."""

    def __init__(self, path: Path, durability: Durability = "process") -> None:
        self._conn = connect(path, durability)
        self._conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS recs (
                user_id TEXT PRIMARY KEY,
                version INTEGER NOT NULL,
                written_at REAL NOT NULL,
                body BLOB NOT NULL
            );
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
            """
        )
        self._lock = threading.Lock()
        self._read = threading.local()
        self._path = path
        self._durability = durability

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._read, "conn", None)
        if conn is None:
            conn = self._read.conn = connect(self._path, self._durability)
        return conn

    def put_many(self, recs: Sequence[Recommendation], written_at: float) -> int:
        rows = [(r.user_id, r.state_version, written_at, orjson.dumps(r.to_dict())) for r in recs]
        with self._lock:
            before = self._conn.total_changes
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT INTO recs(user_id, version, written_at, body) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(user_id) DO UPDATE SET version = excluded.version, "
                    "written_at = excluded.written_at, body = excluded.body "
                    "WHERE excluded.version >= recs.version",
                    rows,
                )
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # SQLite may have ended it (a full disk)
                    self._conn.execute("ROLLBACK")
                raise
            return self._conn.total_changes - before

    def get(self, user_id: str) -> tuple[Recommendation, float] | None:
        row = (
            self._reader()
            .execute("SELECT body, written_at FROM recs WHERE user_id = ?", (user_id,))
            .fetchone()
        )
        if row is None:
            return None
        return Recommendation.from_dict(orjson.loads(row[0])), float(row[1])

    def delete(self, user_id: str) -> int:
        """Delete one user's list (privacy); returns how many (0 or 1)."""
        with self._lock:
            cur = self._conn.execute("DELETE FROM recs WHERE user_id = ?", (user_id,))
        return int(cur.rowcount)

    def put_popular(self, rec: Recommendation, written_at: float) -> None:
        body = orjson.dumps(rec.to_dict())
        with self._lock:
            self._conn.execute(
                "INSERT INTO recs(user_id, version, written_at, body) VALUES (?, 0, ?, ?) "
                "ON CONFLICT(user_id) DO UPDATE SET written_at = excluded.written_at, "
                "body = excluded.body",
                (POPULAR_KEY, written_at, body),
            )

    def get_popular(self) -> tuple[Recommendation, float] | None:
        return self.get(POPULAR_KEY)

    def get_meta(self, key: str) -> bytes | None:
        """What the runner publishes beside the lists (``recloop.streaming.board``)."""
        row = self._reader().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def put_meta(self, key: str, value: bytes) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def swap_meta(self, key: str, expect: bytes | None, value: bytes) -> bool:
        """Set ``key`` to ``value`` only if it holds ``expect`` now (None: absent)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
                if (None if row is None else bytes(row[0])) != expect:
                    self._conn.execute("ROLLBACK")
                    return False
                self._conn.execute(
                    "INSERT INTO meta(key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )
                self._conn.execute("COMMIT")
                return True
            except BaseException:
                if self._conn.in_transaction:  # SQLite may have ended it (a full disk)
                    self._conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()
        conn = getattr(self._read, "conn", None)
        if conn is not None:
            conn.close()
