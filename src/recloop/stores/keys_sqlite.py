"""API keys and the audit log in one SQLite file (``keys.db`` under ``data_dir``), shared
by every serving process on the machine and by the ``recloop keys`` command."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from recloop.core.errors import DuplicateKeyError, UnknownKeyError
from recloop.stores.keys import AuditEntry, KeyInfo, Scope, check_scope
from recloop.stores.sqlite_common import Durability, connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, scope TEXT NOT NULL,
    digest BLOB NOT NULL UNIQUE, created REAL NOT NULL, revoked REAL);
CREATE UNIQUE INDEX IF NOT EXISTS keys_active_name ON keys(name) WHERE revoked IS NULL;
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY, time REAL NOT NULL, key TEXT NOT NULL, method TEXT NOT NULL,
    path TEXT NOT NULL, status INTEGER NOT NULL, loop TEXT);
"""


def _info(row: tuple[Any, ...]) -> KeyInfo:
    return KeyInfo(str(row[0]), check_scope(str(row[1])), float(row[2]), row[3])


def _entry(row: tuple[Any, ...]) -> AuditEntry:
    return AuditEntry(
        time=float(row[1]),
        key=str(row[2]),
        method=str(row[3]),
        path=str(row[4]),
        status=int(row[5]),
        loop=row[6],
        seq=int(row[0]),
    )


class SqliteKeyStore:
    def __init__(self, path: Path, keep: int, durability: Durability = "process") -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._conn = connect(path, durability)
        self._conn.executescript(SCHEMA)

    def add(self, name: str, scope: Scope, key_digest: bytes, created: float) -> KeyInfo:
        with self._lock:
            try:
                self._conn.execute(
                    "INSERT INTO keys (name, scope, digest, created) VALUES (?, ?, ?, ?)",
                    (name, scope, key_digest, created),
                )
            except sqlite3.IntegrityError:
                raise DuplicateKeyError(f"an active key is named {name!r}") from None
        return KeyInfo(name, scope, created, None)

    def revoke(self, name: str, when: float) -> KeyInfo:
        with self._lock:
            row = self._conn.execute(
                "UPDATE keys SET revoked = ? WHERE name = ? AND revoked IS NULL "
                "RETURNING name, scope, created, revoked",
                (when, name),
            ).fetchone()
        if row is None:
            raise UnknownKeyError(f"no active key named {name!r}")
        return _info(row)

    def all_keys(self) -> list[KeyInfo]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT name, scope, created, revoked FROM keys ORDER BY id"
            ).fetchall()
        return [_info(r) for r in rows]

    def active(self) -> tuple[dict[bytes, tuple[str, Scope]], bool]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT digest, name, scope, revoked IS NULL FROM keys"
            ).fetchall()
        table = {bytes(r[0]): (str(r[1]), check_scope(str(r[2]))) for r in rows if r[3]}
        return table, bool(rows)

    def audit(self, entry: AuditEntry) -> None:
        with self._lock:
            cur = self._conn.execute(
                "INSERT INTO audit (time, key, method, path, status, loop) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (entry.time, entry.key, entry.method, entry.path, entry.status, entry.loop),
            )
            if cur.lastrowid is not None and cur.lastrowid > self.keep:
                self._conn.execute("DELETE FROM audit WHERE seq <= ?", (cur.lastrowid - self.keep,))

    def audit_entries(self, limit: int, before: int | None = None) -> list[AuditEntry]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, time, key, method, path, status, loop FROM audit "
                "WHERE seq < ? ORDER BY seq DESC LIMIT ?",
                (before if before is not None else 2**63 - 1, limit),
            ).fetchall()
        return [_entry(r) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
