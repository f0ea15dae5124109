"""Settings changed while a loop runs: applied at once here, by every other process of the
loop within a step, kept across restarts, and checked like any settings."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from recloop import Loop
from recloop.core.clock import FakeClock
from recloop.core.errors import InvalidInputError
from recloop.core.types import Action
from recloop.settings import LoopSettings

ACTIONS = [Action("a", {"x": 1.0}), Action("b", {"x": 2.0}), Action("c", {"x": 3.0})]


def test_exploration_and_window_change_at_once_and_outlive_a_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    with Loop.open(tmp_path, start=False, clock=clock, exp_unit_seconds=1.0) as lp:
        assert max(lp.rank({}, ACTIONS).probabilities) == pytest.approx(0.8 + 0.2 / 3)
        settings = lp.reconfigure(epsilon=0.05, exp_unit_seconds=3.0, default_reward=-1.0)
        assert settings.epsilon == 0.05 and lp.settings.exp_unit_seconds == 3.0
        assert max(lp.rank({}, ACTIONS).probabilities) == pytest.approx(0.95 + 0.05 / 3)
        late = lp.rank({}, ACTIONS, event_id="late")
        clock.advance(2.0)  # past the old window, inside the new one
        lp.reward("late", 1.0)
        lp.step()
        clock.advance(2.0)
        lp.step()
        joined = {e.decision.event_id: e for e in lp.joined.iter_all()}
        assert joined["late"].reward == 1.0 and not joined["late"].used_default
        assert all(e.reward == -1.0 for k, e in joined.items() if k != late.event_id)
    # the overrides are the loop's: a restart with the configured settings keeps them
    with Loop.open(tmp_path, start=False, clock=clock, exp_unit_seconds=1.0) as again:
        assert again.settings.epsilon == 0.05 and again.settings.exp_unit_seconds == 3.0
        assert again.stats.get("reconfigurations_total") == 0


def test_other_processes_of_the_loop_apply_it_within_a_step(tmp_path: Path) -> None:
    clock = FakeClock()
    settings = LoopSettings(exp_unit_seconds=1.0)
    pipeline = Loop(settings, tmp_path, clock=clock, role="pipeline")
    server = Loop(settings, tmp_path, clock=clock, role="serve")
    try:
        pipeline.reconfigure(explorer="greedy", checkpoint_every_examples=7)
        assert server.settings.explorer == "epsilon-greedy"
        server.step()
        assert server.settings.explorer == "greedy"
        assert max(server.rank({}, ACTIONS).probabilities) == 1.0
        assert pipeline.pipeline is not None
        assert pipeline.pipeline.settings.checkpoint_every_examples == 7
    finally:
        server.close()
        pipeline.close()


def test_bad_changes_are_refused_and_change_nothing(loop: Loop) -> None:
    with pytest.raises(InvalidInputError, match=r"cannot change \['seed'\]"):
        loop.reconfigure(seed=3)
    with pytest.raises(InvalidInputError, match="epsilon"):
        loop.reconfigure(epsilon=2.0)
    assert loop.settings.epsilon == 0.2
    assert loop.joined.get_state("settings.overrides") is None


def test_new_vw_arguments_start_a_learner_that_learns_the_history_again(tmp_path: Path) -> None:
    clock = FakeClock()
    with Loop.open(tmp_path, start=False, clock=clock, exp_unit_seconds=1.0) as lp:
        for i in range(300):
            d = lp.rank({"u": float(i % 3)}, ACTIONS, event_id=f"h-{i}")
            lp.reward(d.event_id, 1.0 if d.chosen == "b" else 0.0)
            clock.advance(0.01)
        clock.advance(2.0)
        lp.step()
        assert lp.pipeline is not None and lp.pipeline.learner_offset == 300
        old = lp.pipeline.learner
        lp.reconfigure(vw_args="--cb_adf --cb_type ips", interactions=[])
        assert lp.pipeline.learner is not old and lp.pipeline.learner_offset == 0
        assert lp.pipeline.learner.args == "--cb_adf --cb_type ips"
        lp.step()
        assert lp.pipeline.learner_offset == 300  # the whole history, learned again
        lp.pipeline.checkpoint(clock.now())
        assert lp.models.newest().meta["args"] == "--cb_adf --cb_type ips"
    # a restart resumes the learner of the current arguments, not an older one's version
    with Loop.open(tmp_path, start=False, clock=clock, exp_unit_seconds=1.0) as again:
        assert again.pipeline.learner.args == "--cb_adf --cb_type ips"
        assert again.pipeline.learner_offset == 300


def test_a_model_reset_serves_an_untrained_model_and_learns_afresh_from_now(
    tmp_path: Path,
) -> None:
    clock = FakeClock()

    def play(lp: Loop, n: int, tag: str) -> None:
        for i in range(n):
            d = lp.rank({"u": 1.0}, ACTIONS, event_id=f"{tag}-{i}")
            lp.reward(d.event_id, 1.0 if d.chosen == "b" else 0.0)
            clock.advance(0.01)
        clock.advance(2.0)
        lp.step()

    with Loop.open(tmp_path, start=False, clock=clock, exp_unit_seconds=1.0) as lp:
        play(lp, 300, "before")
        assert lp.pipeline is not None
        lp.pipeline.checkpoint(clock.now())
        trained = lp.model_version
        lp.activate_model(trained)  # pinned: a reset unpins
        reset = lp.reset_model()
        assert lp.model_version == reset != trained and lp.models.pinned() is None
        scores = lp.served.slot.current.policy.scores({"u": 1.0}, ACTIONS)
        assert max(scores) == min(scores)  # untrained: no preference
        play(lp, 100, "after")
        assert lp.pipeline.learner_offset == 400
        assert lp.pipeline.learner.examples_learned == 100  # not the 300 before the reset
        lp.pipeline.checkpoint(clock.now())
        newest = lp.models.newest()
        assert newest is not None and "reset" not in newest.meta
        assert lp.refresh_model() == newest.version  # following the newest again


def test_deleting_the_logs_removes_learned_joined_examples_and_never_rejoins(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    with Loop.open(tmp_path, start=False, clock=clock, exp_unit_seconds=1.0) as lp:
        for i in range(200):
            d = lp.rank({"u": 1.0}, ACTIONS, event_id=f"d-{i}")
            lp.reward(d.event_id, 1.0)
            clock.advance(0.01)
        clock.advance(1.5)
        lp.step()  # joins all 200 and checkpoints (one simulated second has passed)
        assert lp.pipeline is not None and lp.pipeline.learner_offset == 200
        late = lp.rank({"u": 1.0}, ACTIONS, event_id="joined-after-the-checkpoint")
        clock.advance(1.5)
        lp.step()
        deleted = lp.delete_logs()
        learned = max(int(v.meta["learner_offset"]) for v in lp.models.versions())
        assert deleted == min(learned, 200) and lp.joined.end_seq() == 201
        assert lp.joined.count() == 201 - deleted
        assert late.event_id in {e.decision.event_id for e in lp.joined.iter_all()}
    # a restart replays the log from the joiner's point: nothing deleted comes back
    with Loop.open(tmp_path, start=False, clock=clock, exp_unit_seconds=1.0) as again:
        again.step()
        assert again.joined.count() == 201 - deleted and again.joined.end_seq() == 201
        assert again.pipeline is not None and again.pipeline.learner_offset >= learned


def test_log_retention_deletes_what_has_aged_out(tmp_path: Path) -> None:
    clock = FakeClock()
    settings = {"exp_unit_seconds": 1.0, "log_retention_days": 100 / 86400}  # 100 seconds
    with Loop.open(tmp_path, start=False, clock=clock, **settings) as lp:
        for i in range(100):
            d = lp.rank({"u": 1.0}, ACTIONS, event_id=f"old-{i}")
            lp.reward(d.event_id, 1.0)
            clock.advance(0.01)
        clock.advance(2.0)
        lp.step()  # joined and checkpointed; too young to go
        assert lp.joined.count() == 100
        clock.advance(150.0)
        for i in range(10):
            lp.rank({"u": 1.0}, ACTIONS, event_id=f"new-{i}")
        clock.advance(2.0)
        lp.step()
        lp.pipeline.checkpoint(clock.now())
        clock.advance(61.0)
        lp.step()  # the first 100 are over 100 s old: deleted; the 10 new ones stay
        assert {e.decision.event_id for e in lp.joined.iter_all()} == {
            f"new-{i}" for i in range(10)
        }


def test_resending_the_personalizer_configuration_unchanged_changes_nothing(
    tmp_path: Path,
) -> None:
    """Issue 20: the runs where one model version went wrong had each re-sent the service
    configuration unchanged first (update_service_configuration(get_service_configuration())).
    That must not start a new learner, relearn, or move any setting."""
    from recloop.serving.routes.personalizer_admin import (
        configuration_changes,
        service_configuration,
    )

    clock = FakeClock()
    with Loop.open(tmp_path, start=False, clock=clock, exp_unit_seconds=1.0) as lp:
        for i in range(20):
            lp.reward(lp.rank({"u": i % 2}, ["a", "b"]).event_id, 1.0)
        clock.advance(5)
        lp.step()
        assert lp.pipeline is not None
        learner, offset, settings = lp.pipeline.learner, lp.pipeline.learner_offset, lp.settings
        body = json.loads(json.dumps(service_configuration(lp)))  # as it travels over HTTP
        lp.reconfigure(**configuration_changes(body))
        lp.step()
        assert lp.settings == settings
        assert lp.pipeline.learner is learner and lp.pipeline.learner_offset == offset


def test_unusable_stored_settings_are_visible_not_silent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from recloop.loop.runtime_settings import OVERRIDES_KEY
    from recloop.serving.health import loop_readiness

    with Loop.open(tmp_path, start=False, epsilon=0.1) as lp:
        lp.joined.set_state(OVERRIDES_KEY, json.dumps({"epsilon": 7}))  # as an old version
    with caplog.at_level(logging.ERROR, logger="recloop.client"):
        reopened = Loop.open(tmp_path, start=False, epsilon=0.1)
    said = [r for r in caplog.records if "overrides" in r.getMessage()]
    assert [(r.levelname, r.exc_info) for r in said] == [("ERROR", None)]  # was a traceback
    assert "epsilon" in said[0].getMessage()
    with reopened as lp:
        assert lp.settings.epsilon == 0.1  # the configured settings stay in force...
        assert lp.settings_problem is not None and "epsilon" in lp.settings_problem
        assert lp.stats.get("settings_overrides_unusable") == 1  # ...and it shows
        ready = loop_readiness(lp, 100)
        assert ready["ready"] is False and "unusable" in ready["reason"]
        lp.reconfigure(epsilon=0.3)  # a good override replaces the bad one
        assert lp.settings_problem is None and loop_readiness(lp, 100)["ready"] is True
