"""Online off-policy evaluation: estimators on hand-computed logs, and interval coverage."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from recloop import Loop
from recloop.core.clock import FakeClock
from recloop.evaluation.estimators import MeanStats, WeightedRewardStats
from recloop.simulators.synthetic import SyntheticPopulation


def test_ips_and_snips_on_a_tiny_log() -> None:
    s = WeightedRewardStats()
    for w, r in [(2.0, 1.0), (0.0, 1.0), (2.0, 0.0), (4.0, 1.0)]:
        s.add(w, r)
    assert s.ips().value == pytest.approx((2 + 0 + 0 + 4) / 4)
    assert s.snips().value == pytest.approx(6 / 8)
    assert s.effective_sample_size() == pytest.approx(64 / 24)
    assert s.max_w == 4.0
    ips = s.ips()
    wr = [2.0, 0.0, 0.0, 4.0]
    mean = sum(wr) / 4
    var = sum((x - mean) ** 2 for x in wr) / 4
    assert ips.high - ips.value == pytest.approx(1.959963984540054 * math.sqrt(var / 4))


def test_snips_equals_ips_when_weights_average_one() -> None:
    s = WeightedRewardStats()
    for w, r in [(0.5, 1.0), (1.5, 0.2), (1.0, 0.7), (1.0, 0.0)]:
        s.add(w, r)
    assert s.snips().value == pytest.approx(s.ips().value)


def test_empty_stats_are_nan_not_errors() -> None:
    assert math.isnan(WeightedRewardStats().ips().value)
    assert math.isnan(WeightedRewardStats().snips().value)
    assert math.isnan(MeanStats().estimate().value)


def _run(seed: int, tmp: Path, events: int = 1500) -> tuple[dict[str, dict], dict[str, float]]:
    clock = FakeClock()
    population = SyntheticPopulation(seed=seed)
    with Loop.open(tmp, start=False, clock=clock, exp_unit_seconds=1.0, seed=seed) as lp:
        lp.register_policy("always-politics", "fixed", {"action_id": "politics"})
        lp.register_policy("always-music", "fixed", {"action_id": "music"})
        for i in range(1, events + 1):
            ctx = population.context()
            d = lp.rank(ctx, population.actions(), event_id=f"s{seed}-{i}")
            r = population.reward(ctx, d.chosen)
            if r:
                lp.reward(d.event_id, r)
            clock.advance(0.01)
            if i % 100 == 0:
                lp.step()
        clock.advance(5)
        lp.step()
        report = {c["name"]: c for c in lp.evaluations()["candidates"]}
    truth = {
        "always-politics": population.value(lambda c: {"politics": 1.0}),
        "always-music": population.value(lambda c: {"music": 1.0}),
    }
    return report, truth


def test_candidate_estimates_cover_true_value_in_90_percent_of_seeded_runs(
    tmp_path: Path,
) -> None:
    covered = {"ips": 0, "snips": 0}
    runs = 0
    for seed in range(30):
        report, truth = _run(seed, tmp_path / str(seed))
        for name, value in truth.items():
            runs += 1
            assert report[name]["n"] == 1500
            for est in covered:
                e = report[name][est]
                covered[est] += e["low"] <= value <= e["high"]
    for est, hits in covered.items():
        assert hits / runs >= 0.90, (est, hits, runs)
