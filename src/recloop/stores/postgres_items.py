"""PostgreSQL item catalogue: the same semantics as ``SqliteItemStore``, for several machines.

All loops share two tables, keyed by loop name. A write transaction takes the loop's
advisory transaction lock first, so one process writes a loop's catalogue at a time and
seqs are assigned in commit order: a reader of the change feed never skips a change
committed late. JSON columns are orjson bytes (BYTEA), as in SQLite, so fields and
features round-trip exactly (JSONB would reorder keys and rewrite numbers).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson

from recloop.core.types import ItemRecord
from recloop.log.codec import encode_item_columns
from recloop.stores.postgres_db import Conn, PostgresStore, lock_key

# item_id is COLLATE "C": ids compare and page in code-point order, as SQLite's BINARY
# does, whatever collation the database was created with.
SCHEMA = """
CREATE TABLE IF NOT EXISTS recloop_items (
    loop TEXT NOT NULL, item_id TEXT COLLATE "C" NOT NULL, seq BIGINT NOT NULL,
    content_hash TEXT NOT NULL, fields BYTEA NOT NULL, features BYTEA NOT NULL,
    times BYTEA NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (loop, item_id));
CREATE UNIQUE INDEX IF NOT EXISTS recloop_items_seq ON recloop_items(loop, seq);
CREATE TABLE IF NOT EXISTS recloop_item_meta (
    loop TEXT NOT NULL, key TEXT NOT NULL, value BYTEA, version BIGINT NOT NULL,
    PRIMARY KEY (loop, key));
"""
COLUMNS = "item_id, content_hash, fields, features, times, seq, updated_at, deleted"


def _record(row: Sequence[Any]) -> ItemRecord:
    return ItemRecord(
        item_id=str(row[0]),
        content_hash=str(row[1]),
        fields=orjson.loads(bytes(row[2])),
        features=orjson.loads(bytes(row[3])),
        times=tuple((str(n), float(t)) for n, t in orjson.loads(bytes(row[4]))),
        seq=int(row[5]),
        updated_at=float(row[6]),
        deleted=bool(row[7]),
    )


def _state(conn: Conn, loop: str) -> tuple[int, bytes | None]:
    row = conn.execute(
        "SELECT version, value FROM recloop_item_meta WHERE loop = %s AND key = 'generator'",
        (loop,),
    ).fetchone()
    if row is None:
        return 0, None
    return int(row[0]), None if row[1] is None else bytes(row[1])


def _get(conn: Conn, loop: str, item_id: str) -> ItemRecord | None:
    row = conn.execute(
        f"SELECT {COLUMNS} FROM recloop_items WHERE loop = %s AND item_id = %s AND NOT deleted",
        (loop, item_id),
    ).fetchone()
    return None if row is None else _record(row)


def _last_seq(conn: Conn, loop: str) -> int:
    row = conn.execute(
        "SELECT COALESCE(MAX(seq), 0) FROM recloop_items WHERE loop = %s", (loop,)
    ).fetchone()
    return int(row[0]) if row else 0


class _Writer:
    """Valid only inside ``writing()``: the loop's advisory lock is held."""

    def __init__(self, conn: Conn, loop: str) -> None:
        self._conn = conn
        self._loop = loop

    def state(self) -> tuple[int, bytes | None]:
        return _state(self._conn, self._loop)

    def get(self, item_id: str) -> ItemRecord | None:
        return _get(self._conn, self._loop, item_id)

    def put(self, records: Sequence[ItemRecord]) -> None:
        if not records:
            return
        seq = _last_seq(self._conn, self._loop) + 1
        now = time.time()
        # One statement per record (pipelined by executemany): a batch naming an id twice
        # keeps the last, with the higher seq, like SQLite's INSERT OR REPLACE.
        with self._conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO recloop_items(loop, {COLUMNS}) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, FALSE) "
                "ON CONFLICT (loop, item_id) DO UPDATE SET content_hash = EXCLUDED.content_hash, "
                "fields = EXCLUDED.fields, features = EXCLUDED.features, times = EXCLUDED.times, "
                "seq = EXCLUDED.seq, updated_at = EXCLUDED.updated_at, deleted = FALSE",
                [
                    (self._loop, r.item_id, r.content_hash, *encode_item_columns(r), seq + i, now)
                    for i, r in enumerate(records)
                ],
            )

    def delete(self, item_ids: Sequence[str]) -> int:
        seq = _last_seq(self._conn, self._loop) + 1
        deleted = 0
        for i, item_id in enumerate(item_ids):
            cur = self._conn.execute(
                "UPDATE recloop_items SET deleted = TRUE, seq = %s, updated_at = %s "
                "WHERE loop = %s AND item_id = %s AND NOT deleted",
                (seq + i, time.time(), self._loop, item_id),
            )
            deleted += cur.rowcount
        return deleted

    def set_state(self, blob: bytes) -> int:
        version = _state(self._conn, self._loop)[0] + 1
        self._conn.execute(
            "INSERT INTO recloop_item_meta(loop, key, value, version) "
            "VALUES (%s, 'generator', %s, %s) "
            "ON CONFLICT (loop, key) DO UPDATE SET value = EXCLUDED.value, "
            "version = EXCLUDED.version",
            (self._loop, blob, version),
        )
        return version


class PostgresItemStore(PostgresStore):
    def __init__(self, url: str, loop: str) -> None:
        super().__init__(url, loop, SCHEMA)

    @contextmanager
    def writing(self) -> Iterator[_Writer]:
        """One transaction; an exception inside rolls all of it back. The loop's advisory
        lock makes it the only writer across processes (READ COMMITTED: each statement
        after the lock sees every earlier writer's commit). A lost database raises
        ``StoreUnavailableError``; the writes are upserts, so the caller may send them
        again."""
        key = lock_key(self.loop, "items")
        with self._db.transaction(
            lambda c: c.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
        ) as conn:
            yield _Writer(conn, self.loop)

    def get(self, item_id: str) -> ItemRecord | None:
        return self._db.read(lambda c: _get(c, self.loop, item_id))

    def since(self, seq: int, limit: int = 10_000) -> list[ItemRecord]:
        rows = self._all(
            f"SELECT {COLUMNS} FROM recloop_items WHERE loop = %s AND seq > %s "
            "ORDER BY seq LIMIT %s",
            (self.loop, seq, limit),
        )
        return [_record(r) for r in rows]

    def last_seq(self) -> int:
        return self._db.read(lambda c: _last_seq(c, self.loop))

    def state(self) -> tuple[int, bytes | None]:
        return self._db.read(lambda c: _state(c, self.loop))

    def count(self) -> int:
        return self._count(
            "SELECT COUNT(*) FROM recloop_items WHERE loop = %s AND NOT deleted", (self.loop,)
        )

    def items(self, after: str = "", limit: int = 1000) -> list[ItemRecord]:
        rows = self._all(
            f"SELECT {COLUMNS} FROM recloop_items WHERE loop = %s AND NOT deleted "
            "AND item_id > %s ORDER BY item_id LIMIT %s",
            (self.loop, after, limit),
        )
        return [_record(r) for r in rows]
