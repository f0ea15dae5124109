"""SQLite model store: versions are integers as strings ("1", "2", ...), blobs are checksummed."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from recloop.core.errors import UnknownModelError
from recloop.core.protocols import ModelVersion, version_number
from recloop.stores.sqlite_common import Durability, connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    version INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    sha256  TEXT NOT NULL,
    meta    BLOB NOT NULL,
    blob    BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS pin (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER);
"""


def _row_to_version(row: tuple[Any, ...]) -> ModelVersion:
    return ModelVersion(str(row[0]), float(row[1]), str(row[2]), orjson.loads(row[3]))


class SqliteModelStore:
    """put / get / latest / activate (pin = rollback) / follow_newest (unpin)."""

    def __init__(self, path: Path, durability: Durability = "process", keep: int = 200) -> None:
        self.keep = keep
        self._conn = connect(path, durability)
        self._conn.executescript(SCHEMA)
        self._lock = threading.Lock()

    def put(self, blob: bytes, meta: Mapping[str, Any]) -> ModelVersion:
        digest = hashlib.sha256(blob).hexdigest()
        with self._lock:
            cur = self._conn.execute(
                "INSERT INTO models(created, sha256, meta, blob) VALUES (?,?,?,?)",
                (time.time(), digest, orjson.dumps(dict(meta)), blob),
            )
            row = self._conn.execute(
                "SELECT version, created, sha256, meta FROM models WHERE version = ?",
                (cur.lastrowid,),
            ).fetchone()
            self._conn.execute(
                "DELETE FROM models WHERE version <= ? "
                "AND version NOT IN (SELECT version FROM pin WHERE version IS NOT NULL)",
                (int(row[0]) - self.keep,),
            )
        return _row_to_version(row)

    def get(self, version: str) -> tuple[ModelVersion, bytes]:
        number = version_number(version)
        if number is None:
            raise UnknownModelError(f"no model version {version!r}")
        with self._lock:
            row = self._conn.execute(
                "SELECT version, created, sha256, meta, blob FROM models WHERE version = ?",
                (number,),
            ).fetchone()
        if row is None:
            raise UnknownModelError(f"no model version {version!r}")
        return _row_to_version(row[:4]), bytes(row[4])

    def newest(self) -> ModelVersion | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT version, created, sha256, meta FROM models ORDER BY version DESC LIMIT 1"
            ).fetchone()
        return None if row is None else _row_to_version(row)

    def pinned(self) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT version FROM pin WHERE id = 1").fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def latest(self) -> ModelVersion | None:
        pinned = self.pinned()
        if pinned is not None:
            return self.get(pinned)[0]
        return self.newest()

    def activate(self, version: str) -> None:
        number = int(self.get(version)[0].version)  # raises UnknownModelError
        with self._lock:
            self._conn.execute(
                "INSERT INTO pin(id, version) VALUES (1, ?) "
                "ON CONFLICT(id) DO UPDATE SET version = excluded.version",
                (number,),
            )

    def follow_newest(self) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM pin")

    def versions(self, limit: int = 100) -> list[ModelVersion]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT version, created, sha256, meta FROM models ORDER BY version DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [_row_to_version(r) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
