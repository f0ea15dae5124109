"""Online off-policy evaluation: estimators on hand-computed logs, and interval coverage."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from recloop import Loop
from recloop.core.clock import FakeClock
from recloop.evaluation.offpolicy import IPS, SNIPS
from recloop.evaluation.terms import TermSums
from recloop.simulators.synthetic import SyntheticPopulation


def _streamed(rows: list[tuple[float, float]]) -> tuple[TermSums, TermSums]:
    """What a candidate accumulates online: the offline estimators' row terms, summed."""
    ips, snips = TermSums(), TermSums()
    for w, r in rows:
        ips.add(*IPS.row(w, r), w=w)
        snips.add(*SNIPS.row(w, r), w=w)
    return ips, snips


def test_ips_and_snips_on_a_tiny_log() -> None:
    ips, snips = _streamed([(2.0, 1.0), (0.0, 1.0), (2.0, 0.0), (4.0, 1.0)])
    assert ips.value() == pytest.approx((2 + 0 + 0 + 4) / 4)
    assert snips.value() == pytest.approx(6 / 8)
    assert ips.effective_sample_size() == pytest.approx(64 / 24)
    assert ips.max_w == 4.0
    interval = ips.normal_interval()
    wr = [2.0, 0.0, 0.0, 4.0]
    mean = sum(wr) / 4
    var = sum((x - mean) ** 2 for x in wr) / 3  # sample variance
    assert interval.high - interval.value == pytest.approx(1.959963984540054 * math.sqrt(var / 4))


def test_snips_equals_ips_when_weights_average_one() -> None:
    ips, snips = _streamed([(0.5, 1.0), (1.5, 0.2), (1.0, 0.7), (1.0, 0.0)])
    assert snips.value() == pytest.approx(ips.value())


def test_empty_stats_are_nan_not_errors() -> None:
    ips, snips = _streamed([])
    assert math.isnan(ips.normal_interval().value)
    assert math.isnan(snips.normal_interval().value)


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
    for seed in range(60):  # 120 intervals: 30 seeds left the 90% bound to luck (53-55 of 60)
        report, truth = _run(seed, tmp_path / str(seed))
        for name, value in truth.items():
            runs += 1
            assert report[name]["n"] == 1500
            for est in covered:
                e = report[name][est]
                covered[est] += e["low"] <= value <= e["high"]
    for est, hits in covered.items():
        assert hits / runs >= 0.90, (est, hits, runs)
