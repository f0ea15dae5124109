"""Judging in a simulator: the environment's strongest simple baseline runs beside every
agent, each agent's row says whether its interval clears the baseline's, and --output
writes the learning curves."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from recloop.cli import app
from recloop.experiments import online_evaluation
from recloop.experiments.baselines import RevealedQuality
from recloop.experiments.online_evaluation import FixedFusion, RandomRanker


@pytest.fixture
def two_agents(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two 'agents' with known standing: one is the baseline itself, one a coin."""
    rankers = dict(online_evaluation.RANKERS["fusion-shop"])
    rankers["same-as-baseline"] = lambda first, k, seed: FixedFusion(1.0)
    rankers["coin"] = lambda first, k, seed: RandomRanker(seed)
    monkeypatch.setitem(online_evaluation.RANKERS, "fusion-shop", rankers)


@pytest.mark.usefixtures("two_agents")
def test_every_agent_is_judged_against_the_strongest_baseline():
    rows = online_evaluation.evaluate_in_environment(
        "fusion-shop", ["same-as-baseline", "coin"], seeds=[0, 1]
    )
    by = {r["policy"]: r for r in rows}
    assert list(by) == ["same-as-baseline", "coin", "baseline"]  # added, not asked for
    assert "against" not in by["baseline"]
    assert by["same-as-baseline"]["against"] == {
        "baseline": "baseline",
        "verdict": "not separated",
    }
    assert by["coin"]["against"] == {"baseline": "baseline", "verdict": "worse"}
    users = len(by["coin"]["per_user_curve"])
    assert users > 10 and by["coin"]["reward_per_user"]["n"] >= users


@pytest.mark.usefixtures("two_agents")
def test_evaluate_agents_writes_learning_curves_and_says_the_verdict(tmp_path):
    # --jobs 1: the rankers this test adds live in this process only
    args = ["evaluate-agents", "--env", "fusion-shop", "-p", "coin", "--seeds", "0", "--jobs", "1"]
    result = CliRunner().invoke(app, [*args, "--output", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "worse" in result.output and "(baseline)" in result.output  # the table wraps
    png = (tmp_path / "learning-curves.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5_000
    rows = json.loads((tmp_path / "evaluation.json").read_text())
    assert [r["policy"] for r in rows] == ["coin", "baseline"]


def test_each_environment_names_a_strongest_baseline_it_can_run():
    for env, name in online_evaluation.STRONGEST.items():
        assert name in online_evaluation.RANKERS[env], env
        assert name in online_evaluation.BASELINES
    assert RevealedQuality.__name__ and "revealed-quality" in online_evaluation.RANKERS["recsim"]


def test_runs_in_worker_processes_give_the_same_figures():
    one = online_evaluation.evaluate_in_environment("fusion-shop", ["random"], [0, 1], jobs=1)
    two = online_evaluation.evaluate_in_environment("fusion-shop", ["random"], [0, 1], jobs=2)
    for row in (*one, *two):
        row.pop("seconds_per_run")
    assert one == two
