"""Rewards outside a loop's range, learners that diverge, corrupt newest model versions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from recloop import Loop
from recloop.core.clock import FakeClock
from recloop.core.errors import InvalidInputError
from recloop.core.types import JoinedExample, Reward

ACTIONS = ["a", "b", "c"]


def _traffic(lp: Loop, clock: FakeClock, n: int, prefix: str) -> None:
    for i in range(n):
        d = lp.rank({"u": i % 3}, ACTIONS, event_id=f"{prefix}{i}")
        lp.reward(d.event_id, 1.0 if d.chosen == "a" else 0.0)
    clock.advance(5.0)
    lp.step()


@pytest.mark.parametrize("value", [1e308, 10**400, -(10**400), 1.5, -1.01])
def test_a_reward_outside_the_range_is_refused(tmp_path: Path, value: float) -> None:
    with Loop.open(tmp_path, start=False) as lp:
        d = lp.rank({}, ACTIONS)
        with pytest.raises(InvalidInputError, match="reward range"):
            lp.reward(d.event_id, value)
        assert lp.stats.get("rejected_total:invalid-input") == 1
        lp.reward(d.event_id, 1.0)  # the bounds themselves are in range
        lp.reward(d.event_id, -1)


def test_the_range_is_a_loop_setting(tmp_path: Path) -> None:
    with Loop.open(tmp_path, start=False, reward_min=0.0, reward_max=250.0) as lp:
        lp.reward(lp.rank({}, ACTIONS).event_id, 199.99)
        with pytest.raises(InvalidInputError):
            lp.reward(lp.rank({}, ACTIONS).event_id, -0.5)
    for bad in (
        {"reward_min": 1.0, "reward_max": 1.0},
        {"reward_max": 1e300},
        {"default_reward": 2.0},
    ):
        with pytest.raises(InvalidInputError):
            Loop.open(tmp_path / "bad", start=False, **bad)


def test_a_huge_reward_logged_before_the_range_does_not_stop_learning(tmp_path: Path) -> None:
    """The issue's case: one finite 1e308 reward poisoned VW, and every later version was
    rejected ("non-finite scores"), again after each restart as the history was relearned.
    Logged here as an older server (no range at the door) would have logged it."""
    clock = FakeClock()
    settings = {"exp_unit_seconds": 1.0, "checkpoint_every_examples": 10}
    with Loop.open(tmp_path, start=False, clock=clock, **settings) as lp:
        d = lp.rank({"u": 0}, ACTIONS, event_id="poison")
        lp.log.append_reward(Reward(d.event_id, 1e308, clock.now()))
        _traffic(lp, clock, 30, "a")
        assert lp.stats.get("models_rejected_total") == 0
        assert lp.stats.get("learner_skipped_total:reward-out-of-range") == 1
        served = int(lp.model_version)
        _traffic(lp, clock, 30, "b")
        assert int(lp.model_version) > served
    # new VW arguments: the whole history is learned again, the poisoned reward included
    with Loop.open(tmp_path, start=False, clock=clock, vw_args="--cb_adf", **settings) as lp:
        _traffic(lp, clock, 30, "c")
        assert lp.stats.get("learner_skipped_total:reward-out-of-range") == 1
        assert lp.stats.get("models_rejected_total") == 0
        assert int(lp.model_version) > served


def test_a_diverged_learner_rolls_back_to_its_last_good_version(tmp_path: Path) -> None:
    clock = FakeClock()
    with Loop.open(
        tmp_path, start=False, clock=clock, exp_unit_seconds=1.0, checkpoint_every_examples=10
    ) as lp:
        _traffic(lp, clock, 20, "a")
        good = lp.model_version
        pipeline = lp.pipeline
        assert pipeline is not None and pipeline.learner is not None
        good_offset = pipeline.learner_offset
        poisoned = lp.joined.read(0, 1)[0]
        # the fault: a learner pushed to infinity (as 1e308 did before rewards were bounded)
        pipeline.learner.learn_one(
            JoinedExample(poisoned.decision, 1e308, 1, False, poisoned.joined_at, 0)
        )
        _traffic(lp, clock, 20, "b")
        assert lp.stats.get("learner_diverged_total") == 1
        assert (
            lp.stats.get("learner_skipped_total:diverged") == pipeline.learner_offset - good_offset
        )
        assert lp.stats.get("models_rejected_total") == 0
        assert lp.model_version == good  # no poisoned version was stored
        _traffic(lp, clock, 20, "c")
        assert int(lp.model_version) > int(good)  # and learning goes on


def test_a_corrupt_newest_version_at_restart_serves_the_previous_good_one(
    tmp_path: Path,
) -> None:
    """A model cut to 3/4 of its bytes: VW loads it without complaint, only the digest
    catches it. Before, the restarted server served the untrained default policy."""
    clock = FakeClock()
    settings = {"exp_unit_seconds": 1.0, "checkpoint_every_examples": 10}
    with Loop.open(tmp_path, start=False, clock=clock, **settings) as lp:
        _traffic(lp, clock, 10, "a")
        first = lp.model_version
        assert lp.pipeline is not None
        first_offset = lp.pipeline.learner_offset
        _traffic(lp, clock, 10, "b")
        newest = lp.model_version
        assert int(newest) > int(first)
    with sqlite3.connect(tmp_path / "default" / "models.db") as db:
        db.execute(
            "UPDATE models SET blob = substr(blob, 1, length(blob) * 3 / 4) WHERE version = ?",
            (int(newest),),
        )
    with Loop.open(tmp_path, start=False, clock=clock, **settings) as lp:
        assert lp.model_version == first
        assert lp.stats.get("models_rejected_total") >= 1
        assert lp.pipeline is not None
        assert lp.pipeline.learner_offset == first_offset  # resumed from the good version
        assert lp.stats.get("learner_resume_rejected_total") >= 1
