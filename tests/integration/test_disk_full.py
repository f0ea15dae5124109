"""A real full disk under the embedded stores (a small tmpfs as the data dir)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from recloop import Loop
from recloop.core.clock import FakeClock

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:
        pass
    finally:
        os.close(fd)


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
        _fill(small_disk / "filler")
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
