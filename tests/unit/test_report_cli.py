"""``recloop report``: the dashboard's charts as PNG files, from a loop's files."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from recloop import Loop
from recloop.cli import app
from recloop.cli.main import _loop_for_report
from recloop.core.clock import FakeClock
from recloop.reporting import loop_report
from recloop.settings import load_settings
from recloop.simulators.synthetic import SyntheticPopulation


def test_report_writes_the_charts_with_real_data(tmp_path: Path) -> None:
    clock = FakeClock()
    population = SyntheticPopulation(seed=4)
    with Loop.open(tmp_path / "data", start=False, clock=clock, exp_unit_seconds=1.0) as lp:
        lp.register_policy("always-sports", "fixed", {"action_id": "sports"})
        for i in range(600):
            ctx = population.context()
            d = lp.rank(ctx, population.actions(), event_id=f"r-{i}")
            if r := population.reward(ctx, d.chosen):
                lp.reward(d.event_id, r)
            clock.advance(0.01)
            if i % 50 == 0:
                lp.step()
        clock.advance(3.0)
        lp.step()
        report = loop_report(lp)
    windows = report["rewards"]
    assert len(windows) == 30 and sum(w["n"] for w in windows) == 600
    assert windows[0]["default"] is not None  # the default policy deployed early: support
    assert [c["name"] for c in report["evaluations"]["candidates"]] == ["always-sports"]
    assert report["join"]["joins"] == 600

    out = tmp_path / "report"
    result = CliRunner().invoke(
        app, ["report", "--data-dir", str(tmp_path / "data"), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["default-estimates.png", "default-reward.png"]
    assert all((out / p).stat().st_size > 10_000 for p in pngs)
    # what the command reads: with no server running it evaluates the log itself
    loop = _loop_for_report(load_settings(data_dir=tmp_path / "data"), "default")
    try:
        reopened = loop_report(loop)
        (candidate,) = reopened["evaluations"]["candidates"]
        assert candidate["name"] == "always-sports" and candidate["n"] == 600
        # a process opened afterwards shows what the stores hold, not its own zero counters
        assert reopened["join"]["decisions_stored"] == reopened["join"]["joined_stored"] == 600
        assert reopened["join"]["decisions"] == 0
    finally:
        loop.close()
    missing = CliRunner().invoke(app, ["report", "--data-dir", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "no loop" in missing.output
