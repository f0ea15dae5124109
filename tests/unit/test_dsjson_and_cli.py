"""DSJSON export readable by VW, and the CLI commands."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import vowpalwabbit
from typer.testing import CliRunner

from recloop import Loop
from recloop.cli import app
from recloop.core.clock import FakeClock
from recloop.core.types import Action, Decision, JoinedExample
from recloop.features.vw_text import labelled_adf_example
from recloop.log.dsjson import to_dsjson
from recloop.simulators.synthetic import SyntheticPopulation

runner = CliRunner()


def _fill(data_dir: Path, events: int = 200) -> list[str]:
    clock = FakeClock()
    population = SyntheticPopulation(seed=1)
    ids = []
    with Loop.open(data_dir, start=False, clock=clock, exp_unit_seconds=1.0) as lp:
        for i in range(events):
            ctx = population.context()
            d = lp.rank(ctx, population.actions(), excluded_actions=["tech"] if i % 7 == 0 else ())
            ids.append(d.event_id)
            if population.reward(ctx, d.chosen):
                lp.reward(d.event_id, 1.0)
            clock.advance(0.01)
        clock.advance(2)
        lp.step()
    return ids


def test_export_writes_dsjson_that_vw_reads_and_learns_from(tmp_path: Path) -> None:
    ids = _fill(tmp_path / "data")
    out = tmp_path / "joined.dsjson"
    result = runner.invoke(
        app, ["export", "--data-dir", str(tmp_path / "data"), "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert len(lines) == 200
    rows = [orjson.loads(line) for line in lines]
    assert [r["EventId"] for r in rows] == ids
    for r in rows:
        assert 0 < r["_label_probability"] <= 1
        assert r["p"][0] == r["_label_probability"]  # the chosen action leads the ranking
        assert r["a"][0] == r["_label_Action"]
        assert r["_label_cost"] in (0.0, -1.0)
    excluded = rows[0]
    assert len(excluded["c"]["_multi"]) == 4  # 'tech' was excluded from the first decision
    ws = vowpalwabbit.Workspace("--cb_explore_adf --dsjson -q CA --quiet")
    for line in lines:
        parsed = ws.parse(line)
        ws.learn(parsed)
        ws.finish_example(parsed)
    assert ws.get_weighted_examples() == 200
    ws.finish()


def test_export_of_missing_loop_fails_clearly(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["export", "--data-dir", str(tmp_path), "--output", str(tmp_path / "x")]
    )
    assert result.exit_code == 2 and "no loop data" in result.output


def test_simulate_in_process_shows_learning() -> None:
    result = runner.invoke(app, ["simulate", "--events", "3000", "--window", "250"])
    assert result.exit_code == 0, result.output
    assert "reward rate over time" in result.output
    assert "always-politics" in result.output and "most-popular" in result.output
    rates = [
        float(line.split("│")[2])
        for line in result.output.splitlines()
        if line.startswith("│") and line.split("│")[1].strip().isdigit()
    ]
    assert len(rates) == 12 and rates[0] < 0.4 and sum(rates[-4:]) / 4 > 0.55


def test_show_config_masks_the_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECLOOP_API_KEY", "topsecret")
    result = runner.invoke(app, ["show-config"])
    assert result.exit_code == 0 and "topsecret" not in result.output


def _hashed(examples: list[vowpalwabbit.Example]) -> list[tuple[str, list[tuple[int, float]]]]:
    out = []
    for ex in examples:
        for n in range(ex.num_namespaces()):
            ns = ex.get_ns(n)
            feats = ex.num_features_in(ns)
            out.append(
                (ns.ns, sorted((ex.feature(ns, j), ex.feature_weight(ns, j)) for j in range(feats)))
            )
    return out


def test_vw_reads_an_export_with_exactly_the_features_the_online_learner_saw() -> None:
    """Same namespaces, same hashes, same weights: categories, bags, nested maps (their own
    namespaces) and numbers, in the context and in the actions."""
    acts = (
        Action("a", {"topic": "politics", "n": 3, "tags": ["x", "y"], "on": True}),
        Action("b", {"title": {"e0": 0.25, "topic": "t3"}, "price": {"z": -1.5, "bin": "q2"}}),
    )
    d = Decision(
        event_id="e1",
        loop="default",
        timestamp=1_700_000_000.0,
        context={"user": {"age": "adult", "n": 2}, "time": "evening", "w": 0.5},
        actions=acts,
        ranking=("b", "a"),
        probabilities=(0.9, 0.1),
        chosen="b",
        chosen_index=1,
        probability=0.9,
        model_version="1",
        policy="vw",
    )
    line = orjson.dumps(to_dsjson(JoinedExample(d, 1.0, 1, False, 1_700_000_010.0)))
    from_json = vowpalwabbit.Workspace("--cb_explore_adf --dsjson -q CA --quiet")
    from_text = vowpalwabbit.Workspace("--cb_explore_adf -q CA --quiet")
    text = labelled_adf_example(d.context, acts, 1, -1.0, 0.9)
    label = vowpalwabbit.LabelType.CONTEXTUAL_BANDIT
    assert _hashed(from_json.parse(line.decode(), labelType=label)) == _hashed(
        from_text.parse(text, labelType=label)
    )


@pytest.mark.parametrize("command", ["serve", "stream"])
def test_a_data_dir_that_cannot_be_written_is_one_line_and_exit_2(
    tmp_path: Path, command: str
) -> None:
    """Was a traceback from the first store to open (and the server's exit status 3);
    a file in place of the dir stands in for a read-only mount here (the fault suite
    mounts one read-only)."""
    in_the_way = tmp_path / "data"
    in_the_way.write_text("not a directory")
    result = runner.invoke(app, [command, "--data-dir", str(in_the_way)])
    assert result.exit_code == 2, result.output
    assert "cannot be written" in result.output and "Traceback" not in result.output
