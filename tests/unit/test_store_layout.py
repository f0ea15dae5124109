"""The embedded stores' files: the event log and dead letters in ``loop.db``, the joined
stream in ``joined.db``; a data directory made before the split keeps working from its
single ``loop.db``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from recloop import Loop
from recloop.core.clock import FakeClock
from recloop.core.errors import UnknownEventError
from recloop.stores.sqlite_files import JOINED_SCHEMA, joined_path

ACTIONS = [{"id": "a", "features": {"x": 1.0}}, {"id": "b", "features": {"x": 2.0}}]


def tables(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


def count(db: Path, table: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def run_events(loop: Loop, clock: FakeClock, n: int, deferred: int = 0) -> None:
    for i in range(n):
        d = loop.rank({"u": float(i)}, ACTIONS, defer_activation=i < deferred)
        loop.reward(d.event_id, 1.0)
    with pytest.raises(UnknownEventError):
        loop.reward("never-decided", 1.0)  # dead-lettered by the serving side
    clock.advance(loop.settings.exp_unit_seconds + loop.settings.join_grace_seconds + 1)
    loop.step()


def test_a_new_loop_keeps_joined_examples_apart_from_its_log(tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
    with Loop.open(tmp_path, start=False, clock=clock) as loop:
        run_events(loop, clock, 20, deferred=3)  # 3 never activated: the joiner's letters
        reasons = sorted(d.reason for d in loop.log.dead_letters())
    loop_dir = tmp_path / "default"
    assert joined_path(loop_dir) == loop_dir / "joined.db"
    assert {"events", "dead_letters"} <= tables(loop_dir / "loop.db")
    assert "joined" not in tables(loop_dir / "loop.db")
    assert {"joined", "offsets", "state"} <= tables(loop_dir / "joined.db")
    assert "events" not in tables(loop_dir / "joined.db")
    assert count(loop_dir / "joined.db", "joined") == 17
    # both kinds of dead letters, in one place, listed together
    assert reasons == ["not-activated"] * 3 + ["unknown-event"]


def test_a_data_dir_from_before_the_split_goes_on_from_its_single_file(
    tmp_path: Path,
) -> None:
    clock = FakeClock(1000.0)
    with Loop.open(tmp_path, start=False, clock=clock) as loop:
        run_events(loop, clock, 10)
    loop_dir = tmp_path / "default"
    # make it look like a directory written before the split: every table in loop.db
    conn = sqlite3.connect(loop_dir / "loop.db")
    conn.execute("ATTACH DATABASE ? AS j", (str(loop_dir / "joined.db"),))
    conn.executescript(JOINED_SCHEMA)  # the same tables the single file had
    for table in ("joined", "offsets", "state"):
        conn.execute(f"INSERT INTO {table} SELECT * FROM j.{table}")
    conn.commit()
    conn.execute("DETACH DATABASE j")
    conn.close()
    for name in ("joined.db", "joined.db-wal", "joined.db-shm"):
        (loop_dir / name).unlink(missing_ok=True)
    assert joined_path(loop_dir) == loop_dir / "loop.db"

    with Loop.open(tmp_path, start=False, clock=clock) as loop:
        assert loop.joined.count() == 10  # the old joined rows, and their offsets
        run_events(loop, clock, 5)
        assert loop.joined.count() == 15  # joined on, none joined twice
    assert not (loop_dir / "joined.db").exists()
    event_ids = sqlite3.connect(loop_dir / "loop.db").execute("SELECT event_id FROM joined")
    ids = [r[0] for r in event_ids]
    assert len(ids) == len(set(ids)) == 15
