"""SQLite item catalogue (``items.db`` in the loop's directory): the embedded default."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from recloop.core.types import ItemRecord
from recloop.log.codec import encode_item_columns
from recloop.stores.sqlite_common import Durability, connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    item_id      TEXT PRIMARY KEY,
    seq          INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    fields       BLOB NOT NULL,
    features     BLOB NOT NULL,
    times        BLOB NOT NULL,
    updated_at   REAL NOT NULL,
    deleted      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS items_seq ON items(seq);
CREATE TABLE IF NOT EXISTS item_meta (key TEXT PRIMARY KEY, value BLOB, version INTEGER);
"""
COLUMNS = "item_id, content_hash, fields, features, times, seq, updated_at, deleted"


def _record(row: tuple[Any, ...]) -> ItemRecord:
    return ItemRecord(
        item_id=row[0],
        content_hash=row[1],
        fields=orjson.loads(row[2]),
        features=orjson.loads(row[3]),
        times=tuple((str(n), float(t)) for n, t in orjson.loads(row[4])),
        seq=int(row[5]),
        updated_at=float(row[6]),
        deleted=bool(row[7]),
    )


class _Writer:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def state(self) -> tuple[int, bytes | None]:
        return _state(self._conn)

    def get(self, item_id: str) -> ItemRecord | None:
        return _get(self._conn, item_id)

    def _next_seq(self) -> int:
        row = self._conn.execute("SELECT coalesce(max(seq), 0) FROM items").fetchone()
        return int(row[0]) + 1

    def put(self, records: Sequence[ItemRecord]) -> None:
        seq = self._next_seq()
        now = time.time()
        self._conn.executemany(
            f"INSERT OR REPLACE INTO items({COLUMNS}) VALUES (?,?,?,?,?,?,?,0)",
            [
                (r.item_id, r.content_hash, *encode_item_columns(r), seq + i, now)
                for i, r in enumerate(records)
            ],
        )

    def delete(self, item_ids: Sequence[str]) -> int:
        seq = self._next_seq()
        deleted = 0
        for i, item_id in enumerate(item_ids):
            cur = self._conn.execute(
                "UPDATE items SET deleted = 1, seq = ?, updated_at = ? "
                "WHERE item_id = ? AND deleted = 0",
                (seq + i, time.time(), item_id),
            )
            deleted += cur.rowcount
        return deleted

    def set_state(self, blob: bytes) -> int:
        version = _state(self._conn)[0] + 1
        self._conn.execute(
            "INSERT OR REPLACE INTO item_meta(key, value, version) VALUES ('generator', ?, ?)",
            (blob, version),
        )
        return version


def _state(conn: Any) -> tuple[int, bytes | None]:
    row = conn.execute("SELECT version, value FROM item_meta WHERE key = 'generator'").fetchone()
    return (0, None) if row is None else (int(row[0]), bytes(row[1]))


def _get(conn: Any, item_id: str) -> ItemRecord | None:
    row = conn.execute(
        f"SELECT {COLUMNS} FROM items WHERE item_id = ? AND deleted = 0", (item_id,)
    ).fetchone()
    return None if row is None else _record(row)


class SqliteItemStore:
    def __init__(self, path: Path, durability: Durability = "process") -> None:
        self._conn = connect(path, durability)
        self._conn.executescript(SCHEMA)
        self._lock = threading.Lock()

    @contextmanager
    def writing(self) -> Iterator[_Writer]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")  # one writer across processes
            try:
                yield _Writer(self._conn)
            except BaseException:
                if self._conn.in_transaction:  # SQLite may have ended it (a full disk)
                    self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def get(self, item_id: str) -> ItemRecord | None:
        with self._lock:
            return _get(self._conn, item_id)

    def since(self, seq: int, limit: int = 10_000) -> list[ItemRecord]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {COLUMNS} FROM items WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
            ).fetchall()
        return [_record(r) for r in rows]

    def last_seq(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT coalesce(max(seq), 0) FROM items").fetchone()[0])

    def state(self) -> tuple[int, bytes | None]:
        with self._lock:
            return _state(self._conn)

    def count(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT count(*) FROM items WHERE deleted = 0").fetchone()
        return int(row[0])

    def items(self, after: str = "", limit: int = 1000) -> list[ItemRecord]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {COLUMNS} FROM items WHERE deleted = 0 AND item_id > ? "
                "ORDER BY item_id LIMIT ?",
                (after, limit),
            ).fetchall()
        return [_record(r) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
