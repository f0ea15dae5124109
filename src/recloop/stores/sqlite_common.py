"""Opening SQLite the way every embedded store needs it."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from recloop.core.errors import StorageLostError, StoreUnavailableError

Durability = Literal["process", "power"]

UNAVAILABLE = {
    sqlite3.SQLITE_BUSY: "locked",
    sqlite3.SQLITE_LOCKED: "locked",
    sqlite3.SQLITE_NOMEM: "out-of-memory",
    sqlite3.SQLITE_READONLY: "read-only",
    sqlite3.SQLITE_IOERR: "io-error",
    sqlite3.SQLITE_FULL: "disk-full",
    sqlite3.SQLITE_CANTOPEN: "cannot-open",
    sqlite3.SQLITE_PROTOCOL: "locked",
}
"""SQLite's primary result codes that say the storage failed, not the statement, each
with the cause counted in ``store_errors_total``. Other errors (no such table, a
constraint) are bugs or handled where they occur, and stay what they are."""


class SqliteUnavailableError(StoreUnavailableError, sqlite3.OperationalError):
    """A storage failure of SQLite's, typed for the web tier (503 problem details) and
    still a ``sqlite3.OperationalError`` (with its ``sqlite_errorcode``) for code that
    catches that."""


def _typed(exc: sqlite3.OperationalError) -> sqlite3.OperationalError:
    reason = UNAVAILABLE.get(getattr(exc, "sqlite_errorcode", -1) & 0xFF)
    if reason is None:
        return exc
    typed = SqliteUnavailableError(f"SQLite: {exc}", reason)
    typed.sqlite_errorcode = exc.sqlite_errorcode
    typed.sqlite_errorname = exc.sqlite_errorname
    return typed


class TypedConnection(sqlite3.Connection):
    """Turns SQLite's storage failures ("database or disk is full", "database is locked"
    past the busy timeout, "disk I/O error") into ``SqliteUnavailableError`` where they
    happen, so every store built on ``connect`` answers them as a 503, not a bare 500."""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.OperationalError as exc:
            raise _typed(exc) from exc

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.OperationalError as exc:
            raise _typed(exc) from exc

    def executescript(self, sql_script: str, /) -> sqlite3.Cursor:
        try:
            return super().executescript(sql_script)
        except sqlite3.OperationalError as exc:
            raise _typed(exc) from exc

    def commit(self) -> None:
        try:
            super().commit()
        except sqlite3.OperationalError as exc:
            raise _typed(exc) from exc


def connect(path: Path, durability: Durability = "process") -> sqlite3.Connection:
    """WAL connection. 'process' (synchronous=NORMAL) survives kill -9 once a commit
    returns; 'power' (synchronous=FULL) also survives power loss, at an fsync per commit.
    Storage failures raise ``SqliteUnavailableError`` (see ``TypedConnection``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path,
        check_same_thread=False,
        isolation_level=None,
        timeout=30.0,
        factory=TypedConnection,
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if durability == 'power' else 'NORMAL'}")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class FileIdentity:
    """Whether the file a store commits into is still the one it opened.

    After ``rm -rf`` of the data dir (or a file replaced under it) SQLite goes on
    committing into the unlinked file, and every such commit would be acknowledged and
    lost. A store checks after each commit, before its caller acknowledges (one
    ``stat``), and once lost stays lost: a file that reappears is not the one
    acknowledged into."""

    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = path, what
        self._identity = self._read()
        self.lost = False

    def _read(self) -> tuple[int, int]:
        st = os.stat(self.path)
        return st.st_dev, st.st_ino

    def check(self) -> None:
        """Raise StorageLostError if the file is gone or replaced, now or before."""
        if not self.lost:
            try:
                self.lost = self._read() != self._identity
            except FileNotFoundError:
                self.lost = True
        if self.lost:
            raise StorageLostError(
                f"the {self.what} {self.path} was deleted or replaced under the server; "
                "nothing more is acknowledged: restore the data dir and restart"
            )
