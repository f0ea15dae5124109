"""A real full disk under the embedded stores (a small tmpfs as the data dir)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from recloop import Loop
from recloop.core.clock import FakeClock
from tests.disk import fill, small_tmpfs


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path, "16m") as mount:
        yield mount


def test_a_full_disk_during_a_join_loses_no_acknowledged_decision(small_disk: Path) -> None:
    clock = FakeClock()
    loop = Loop.open(small_disk / "data", start=False, clock=clock, exp_unit_seconds=1.0)
    try:
        acknowledged = [
            loop.rank({"u": i, "pad": "x" * 200}, ["a", "b", "c"], event_id=f"e{i}").event_id
            for i in range(300)
        ]
        for event_id in acknowledged[:100]:
            loop.reward(event_id, 1.0)
        clock.advance(5.0)
        fill(small_disk / "filler")
        with pytest.raises(sqlite3.OperationalError, match="full"):  # the real error, not a
            loop.step()  # "cannot rollback" from a transaction SQLite already ended
        (small_disk / "filler").unlink()
        loop.step()
        joined = {ex.decision.event_id: ex.reward for ex in loop.joined.read(0, 10_000)}
        assert len(loop.joined.read(0, 10_000)) == len(acknowledged)
        assert set(joined) == set(acknowledged)
        assert sum(joined.values()) == 100.0
    finally:
        loop.close()
