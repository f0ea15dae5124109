"""The loop's two SQLite files, ``loop.db`` (the event log and the dead letters) and
``joined.db`` (joined examples, offsets, forgotten ids): their schemas, where a loop
directory keeps them, and the writes both stores make (a write transaction, dead letters).

Two files, so the pipeline's commits of joined rows never touch the pages the serving
process appends decisions to: a commit by another connection invalidates a connection's
page cache for the whole file, and the next decision appended paid for it (README,
"Measurements behind the code"). Dead letters all live in ``loop.db``: the serving
process writes the ones it refuses, the joiner the ones it finds, idempotently by their
source offset. A data directory made before the split keeps its joined store in
``loop.db`` (:func:`joined_path`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import orjson

from recloop.core.types import (
    DeadLetter,
)
from recloop.stores.sqlite_common import Durability, connect

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


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[None]:
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


def open_with_schema(path: Path, durability: Durability, schema: str) -> sqlite3.Connection:
    conn = connect(path, durability)
    conn.executescript(schema)
    return conn


def insert_letters(conn: sqlite3.Connection, letters: Sequence[DeadLetter]) -> None:
    conn.executemany(
        "INSERT OR IGNORE INTO dead_letters(reason, event_id, ts, body, source_offset) "
        "VALUES (?, ?, ?, ?, ?)",
        [
            (d.reason, d.event_id, d.timestamp, orjson.dumps(d.payload), d.source_offset)
            for d in letters
        ],
    )
