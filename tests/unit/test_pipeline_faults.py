"""The pipeline under failing stores: its in-memory state moves only with its commits."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from recloop import Loop
from recloop.core.clock import FakeClock

ACTIONS = ["a", "b", "c"]


def _fail_once(target: Callable[..., Any], error: Exception, call: int = 1) -> Callable[..., Any]:
    """``target`` that raises ``error`` on its ``call``-th call (the fault), then works."""
    calls = {"n": 0}

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == call:
            raise error
        return target(*args, **kwargs)

    return wrapped


def _joined(loop: Loop) -> list[tuple[str, float]]:
    return [(ex.decision.event_id, ex.reward) for ex in loop.joined.read(0, 100_000)]


@pytest.mark.parametrize("failing", ["commit", "read"])
def test_a_failed_join_step_loses_no_acknowledged_decision(
    tmp_path: Path, failing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fault: the joined store's commit fails (a full disk), or the log's third read of
    the step does (after two batches were fed to the joiner). Before the fix, the read
    position and the closed windows had moved on in memory, and the next good commit saved
    them: every decision of the failed step was lost for good."""
    monkeypatch.setattr("recloop.learning.pipeline.BATCH", 10)
    clock = FakeClock()
    loop = Loop.open(tmp_path, start=False, clock=clock, exp_unit_seconds=1.0)
    try:
        acknowledged = [loop.rank({"u": i}, ACTIONS, event_id=f"e{i}").event_id for i in range(50)]
        for event_id in acknowledged[::2]:
            loop.reward(event_id, 1.0)
        never_shown = [
            loop.rank({}, ACTIONS, event_id=f"d{i}", defer_activation=True).event_id
            for i in range(3)
        ]
        clock.advance(5.0)
        disk_full = sqlite3.OperationalError("database or disk is full")
        if failing == "commit":
            loop.joined.commit_joined = _fail_once(loop.joined.commit_joined, disk_full)  # type: ignore[method-assign]
        else:
            loop.log.read = _fail_once(loop.log.read, disk_full, call=3)  # type: ignore[method-assign]
        with pytest.raises(sqlite3.OperationalError):
            loop.step()
        # more traffic after the fault, then the store works again
        later = [loop.rank({}, ACTIONS, event_id=f"f{i}").event_id for i in range(10)]
        clock.advance(5.0)
        loop.step()
        joined = _joined(loop)
        ids = [event_id for event_id, _ in joined]
        assert sorted(ids) == sorted(acknowledged + later)  # each exactly once
        rewards = dict(joined)
        assert all(rewards[e] == 1.0 for e in acknowledged[::2])
        assert all(rewards[e] == 0.0 for e in acknowledged[1::2] + later)
        letters = loop.log.dead_letters(100)
        assert sorted(x.event_id for x in letters) == sorted(never_shown)
        assert {x.reason for x in letters} == {"not-activated"}
        assert loop.stats.get("joiner_rebuilds_total") == 1
    finally:
        loop.close()


def test_a_joiner_whose_store_stays_away_keeps_retrying(tmp_path: Path) -> None:
    clock = FakeClock()
    loop = Loop.open(tmp_path, start=False, clock=clock, exp_unit_seconds=1.0)
    try:
        ids = [loop.rank({}, ACTIONS, event_id=f"e{i}").event_id for i in range(5)]
        clock.advance(5.0)
        real_commit, real_offset = loop.joined.commit_joined, loop.joined.offset
        away = sqlite3.OperationalError("unable to open database file")

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise away

        loop.joined.commit_joined = broken  # type: ignore[method-assign]
        with pytest.raises(sqlite3.OperationalError):
            loop.step()
        loop.joined.offset = broken  # type: ignore[method-assign]  # the rebuild fails too
        with pytest.raises(sqlite3.OperationalError):
            loop.step()
        loop.joined.commit_joined = real_commit  # type: ignore[method-assign]
        loop.joined.offset = real_offset  # type: ignore[method-assign]
        loop.step()
        assert sorted(e for e, _ in _joined(loop)) == sorted(ids)
    finally:
        loop.close()


def test_a_loop_that_fails_to_open_leaks_no_file(tmp_path: Path) -> None:
    """A standby retries every second: each try that found the lease busy left the item
    catalogue's connection (and its files) open."""
    import os

    from recloop.learning.lease import LeaseBusyError

    holder = Loop.open(tmp_path, start=False, lease_wait_seconds=0.0)
    try:
        with pytest.raises(LeaseBusyError):  # the first try may open what lasts (caches)
            Loop.open(tmp_path, start=False, lease_wait_seconds=0.0)
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(20):
            with pytest.raises(LeaseBusyError):
                Loop.open(tmp_path, start=False, lease_wait_seconds=0.0)
        assert len(os.listdir("/proc/self/fd")) == before
    finally:
        holder.close()
