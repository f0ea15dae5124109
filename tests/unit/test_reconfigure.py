"""Settings changed while a loop runs: applied at once here, by every other process of the
loop within a step, kept across restarts, and checked like any settings."""

from __future__ import annotations

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
    with pytest.raises(InvalidInputError, match="cannot change \\['vw_args'\\]"):
        loop.reconfigure(vw_args="--cb_adf")
    with pytest.raises(InvalidInputError, match="epsilon"):
        loop.reconfigure(epsilon=2.0)
    assert loop.settings.epsilon == 0.2
    assert loop.joined.get_state("settings.overrides") is None
