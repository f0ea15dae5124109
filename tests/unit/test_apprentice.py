"""Apprentice mode: the application's baseline (its first action) is always chosen and
logged for certain; the loop learns from it, and its report shows the learned policy's
estimate above the baseline's when the baseline is the worse policy; switched to online, the
learned policy takes over."""

from __future__ import annotations

import random
from pathlib import Path

from recloop import Loop
from recloop.core.clock import FakeClock
from recloop.simulators.synthetic import SyntheticPopulation


def test_apprentice_learns_from_a_worse_baseline_and_reports_it(tmp_path: Path) -> None:
    clock = FakeClock()
    population = SyntheticPopulation(seed=5)
    app = random.Random(9)  # the application lists its articles in a rotating order
    with Loop.open(tmp_path, start=False, clock=clock, exp_unit_seconds=1.0, seed=5) as lp:
        lp.reconfigure(learning_mode="apprentice")
        for i in range(3000):
            ctx = population.context()
            actions = population.actions()
            app.shuffle(actions)
            d = lp.rank(ctx, actions, event_id=f"a-{i}")
            assert d.chosen == actions[0]["id"] and d.probability == 1.0
            assert d.policy == "apprentice-baseline"
            if r := population.reward(ctx, d.chosen):
                lp.reward(d.event_id, r)
            clock.advance(0.01)
            if i % 50 == 0:
                lp.step()
        clock.advance(3.0)
        lp.step()
        report = lp.apprentice_report()
        assert report["numberOfEvents"] == 3000
        assert 0 < report["numberOfImitatedEvents"] < 3000
        baseline, learned = report["baseline"], report["learned"]
        assert learned["low"] > baseline["high"], report
        assert abs(baseline["value"] - 0.22) < 0.03  # a random topic: (0.7 + 4 x 0.1) / 5

        lp.reconfigure(learning_mode="online")  # good enough: the learned policy takes over
        best = 0
        for i in range(500):
            ctx = population.context()
            d = lp.rank(ctx, population.actions(), event_id=f"o-{i}")
            assert d.policy != "apprentice-baseline" and d.probability < 1.0
            greedy = max(zip(d.probabilities, d.ranking, strict=True))[1]
            best += greedy == population.best_action(ctx)
        assert best / 500 >= 0.9
        print(report["baseline"], report["learned"])


def test_logging_only_shows_the_baseline_and_learns_nothing(tmp_path: Path) -> None:
    clock = FakeClock()
    population = SyntheticPopulation(seed=6)
    with Loop.open(tmp_path, start=False, clock=clock, exp_unit_seconds=1.0) as lp:
        lp.reconfigure(learning_mode="logging")
        for i in range(300):
            ctx = population.context()
            d = lp.rank(ctx, population.actions(), event_id=f"l-{i}")
            assert d.chosen == "politics" and d.probability == 1.0  # the first action
            if r := population.reward(ctx, d.chosen):
                lp.reward(d.event_id, r)
            clock.advance(0.01)
        clock.advance(3.0)
        lp.step()
        assert lp.pipeline is not None
        assert lp.joined.count() == 300 and lp.pipeline.learner_offset == 300
        assert lp.pipeline.learner.examples_learned == 0 and lp.models.newest() is None
