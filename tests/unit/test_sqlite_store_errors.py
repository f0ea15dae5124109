"""SQLite's storage failures are typed at the store boundary (issue 20, defect 8), and a
transaction they break is not left open: a real full disk (a small tmpfs) under the log."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from recloop.core.errors import StoreUnavailableError
from recloop.core.types import DeadLetter
from recloop.stores.sqlite_log import SqliteEventLog
from tests.disk import fill, small_tmpfs


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path, "4m") as mount:
        yield mount


def test_a_commit_on_a_full_disk_is_typed_rolled_back_and_the_log_carries_on(
    small_disk: Path,
) -> None:
    log = SqliteEventLog(small_disk / "loop.db")
    try:
        fill(small_disk / "filler")
        big = DeadLetter("unknown-event", "e1", 0.0, {"pad": "x" * 1_000_000})
        # the page cache holds the row until COMMIT, which then finds no room
        with pytest.raises(StoreUnavailableError) as failure, log.exclusive():
            log.dead_letter(big)
        assert failure.value.reason == "disk-full"
        assert failure.value.status == 503
        assert isinstance(failure.value, sqlite3.OperationalError)  # what it was, still
        assert "full" in str(failure.value)

        (small_disk / "filler").unlink()
        with log.exclusive():  # room again: no transaction was left open
            log.dead_letter(DeadLetter("unknown-event", "e2", 0.0, {}))
        assert [d.event_id for d in log.dead_letters()] == ["e2"]
    finally:
        log.close()


def test_other_sqlite_errors_stay_what_they_are(tmp_path: Path) -> None:
    """Only storage failures become 503s: a bad statement is a bug, not an outage."""
    log = SqliteEventLog(tmp_path / "loop.db")
    try:
        with pytest.raises(sqlite3.OperationalError) as failure:
            log._conn.execute("SELECT * FROM no_such_table")
        assert not isinstance(failure.value, StoreUnavailableError)
    finally:
        log.close()
