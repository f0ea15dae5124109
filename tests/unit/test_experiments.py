"""DSJSON import (the export's inverse) and offline experiments comparing learner configs."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
import typer
from typer.testing import CliRunner

from recloop import Loop
from recloop.cli import app as cli_app
from recloop.core.clock import FakeClock
from recloop.core.errors import InvalidInputError
from recloop.core.types import Action, Decision, JoinedExample
from recloop.evaluation.experiments import LearnerConfig, default_configs, replay_experiment
from recloop.log.dsjson import dsjson_lines, parse_dsjson_line, read_dsjson, to_dsjson
from recloop.policies.vw import VWLearner
from recloop.simulators.synthetic import SyntheticPopulation
from recloop.stores.sqlite_joined import open_joined

runner = CliRunner()
WITH_Q = "--cb_adf --cb_type mtr -q CA"
WITHOUT_Q = "--cb_adf --cb_type mtr"


def _example(i: int, excluded: tuple[str, ...] = (), reward: float = 1.0) -> JoinedExample:
    acts = (
        Action("a", {"topic": "politics", "len": 3, "tags": ["x", "y.z"]}),
        Action("b", {"topic": "sports", "meta": {"lang": "en", "score": 0.25}}),
        Action("c", {}),
        Action("d", {"fresh": True}),
    )
    kept = [a.id for a in acts if a.id not in excluded]
    ranking = (kept[-1], *kept[:-1], *excluded)
    probs = (0.7, *[0.3 / (len(kept) - 1)] * (len(kept) - 1), *[0.0] * len(excluded))
    d = Decision(
        event_id=f"ev-{i}",
        loop="home",
        timestamp=1_700_000_000.123456789 + i / 3,  # finer than the ISO Timestamp keeps
        context={"user": {"age": "adult", "n": 2}, "time": "evening", "on": False, "w": 0.5},
        actions=acts,
        ranking=ranking,
        probabilities=probs,
        chosen=kept[-1],
        chosen_index=next(j for j, a in enumerate(acts) if a.id == kept[-1]),
        probability=0.7,
        model_version="v7",
        policy="vw-cb",
        deferred=i % 2 == 1,
        excluded=excluded,
    )
    return JoinedExample(
        d, reward, n_rewards=i % 3, used_default=i % 3 == 0, joined_at=d.timestamp + 60, seq=i + 1
    )


def test_dsjson_round_trip_gives_equal_examples(tmp_path: Path) -> None:
    examples = [_example(0), _example(1, ("b",), 0.0), _example(2, ("a", "d"), -0.5)]
    for ex in examples:
        line = next(dsjson_lines([ex]))
        assert parse_dsjson_line(line) == ex
        assert parse_dsjson_line(line.decode()) == ex
    path = tmp_path / "log.dsjson"
    path.write_bytes(b"\n".join(dsjson_lines(examples)) + b"\n\n")
    back = list(read_dsjson(path))
    assert back == examples
    assert list(dsjson_lines(back)) == list(dsjson_lines(examples))  # byte-identical re-export
    raw = to_dsjson(examples[1])
    assert raw["_label_cost"] == -0.0 and len(raw["c"]["_multi"]) == 3  # excluded stay out


def test_foreign_dsjson_without_recloop_fields_is_read_with_defaults() -> None:
    raw = to_dsjson(_example(0))
    del raw["_recloop"]
    ex = parse_dsjson_line(orjson.dumps(raw), 12)
    assert ex.reward == 1.0 and ex.n_rewards == 1 and ex.seq == 12 and ex.decision.loop == "default"
    assert abs(ex.decision.timestamp - _example(0).decision.timestamp) < 1e-6
    assert ex.decision.context == _example(0).decision.context


def test_loop_store_round_trips_through_dsjson(tmp_path: Path) -> None:
    population = SyntheticPopulation(seed=1)
    clock = FakeClock()
    with Loop.open(tmp_path, start=False, clock=clock, exp_unit_seconds=1.0) as lp:
        for i in range(60):
            ctx = population.context()
            d = lp.rank(ctx, population.actions(), excluded_actions=["tech"] if i % 7 == 0 else ())
            if population.reward(ctx, d.chosen):
                lp.reward(d.event_id, 1.0)
            clock.advance(0.01)
        clock.advance(2)
        lp.step()
    store = open_joined(tmp_path / "default")
    stored = list(store.iter_all())
    store.close()
    assert len(stored) == 60 and any(ex.decision.excluded for ex in stored)
    assert [parse_dsjson_line(line) for line in dsjson_lines(stored)] == stored


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda raw: b"{not json", "not JSON"),
        (lambda raw: {k: v for k, v in raw.items() if k != "_label_cost"}, "_label_cost"),
        (lambda raw: {**raw, "_labelIndex": 9}, "chosen action index"),
        (lambda raw: {**raw, "_label_probability": 0.0}, "_label_probability"),
        (lambda raw: {**raw, "a": [1, 2], "p": [1.0]}, "one length"),
        (lambda raw: {**raw, "c": {"C": {}}}, "_multi"),
        (lambda raw: [1, 2], "JSON object"),
    ],
)
def test_malformed_lines_raise_with_their_line_number(
    tmp_path: Path, mutate: Any, message: str
) -> None:
    good = next(dsjson_lines([_example(0)]))
    bad = mutate(orjson.loads(good))
    bad_line = bad if isinstance(bad, bytes) else orjson.dumps(bad)
    path = tmp_path / "bad.dsjson"
    path.write_bytes(good + b"\n\n" + bad_line + b"\n")
    with pytest.raises(InvalidInputError, match=rf"line 3: .*{message}"):
        list(read_dsjson(path))


def test_learner_config_reads_decision_service_flags() -> None:
    c = LearnerConfig.parse("ds=--cb_explore_adf --epsilon 0.3 -q CA -l 0.5")
    assert c.vw_args == "--cb_adf -q CA -l 0.5" and c.explorer == "epsilon-greedy"
    assert c.epsilon == 0.3
    assert LearnerConfig.parse("g=-q CA;explorer=greedy").vw_args == "--cb_adf -q CA"
    soft = LearnerConfig.parse("s=--cb_explore_adf --softmax --lambda 4")
    assert soft.explorer == "softmax" and soft.softmax_lambda == 4.0
    assert LearnerConfig.parse("e=--cb_adf;epsilon=0.2").epsilon == 0.2
    for bad in ("no-equals", "b=--cb_explore_adf --bag 5", "x=--cb_adf;epsilon=2", "y=;k=1"):
        with pytest.raises(InvalidInputError):
            LearnerConfig.parse(bad)
    grid = default_configs()
    assert 6 <= len(grid) <= 8 and len({c.name for c in grid}) == len(grid)


def _uniform_log(n: int, seed: int) -> tuple[list[JoinedExample], SyntheticPopulation]:
    """A log of a uniform-random policy over the synthetic population's topics."""
    population = SyntheticPopulation(seed=seed)
    rng = random.Random(seed + 1)
    acts = tuple(Action(a["id"], a["features"]) for a in population.actions())
    p = 1.0 / len(acts)
    out = []
    for i in range(n):
        ctx = population.context()
        k = rng.randrange(len(acts))
        ranking = (acts[k].id, *(a.id for j, a in enumerate(acts) if j != k))
        d = Decision(
            f"e{i}", "news", float(i), ctx, acts, ranking, (p,) * len(acts), acts[k].id, k, p,
            "uniform", "uniform",
        )  # fmt: skip
        out.append(JoinedExample(d, population.reward(ctx, acts[k].id), 1, False, i + 1.0, i + 1))
    return out, population


def _true_progressive_value(
    config: LearnerConfig, examples: list[JoinedExample], population: SyntheticPopulation
) -> float:
    """What progressive validation estimates, computed exactly: the mean over the log of the
    population value of the policy as it stood before each example (same learner, same order)."""
    learner = VWLearner(config.vw_args)
    explorer = config.make_explorer()
    acts = list(examples[0].decision.actions)

    def policy(ctx: dict[str, Any]) -> dict[str, float]:
        probs = explorer.distribution(learner.scores(ctx, acts))
        return {a.id: float(q) for a, q in zip(acts, probs, strict=True)}

    total = 0.0
    for ex in examples:
        total += population.value(policy)
        learner.learn_one(ex)
    learner.close()
    return total / len(examples)


def test_replay_prefers_interactions_and_estimates_their_true_value() -> None:
    examples, population = _uniform_log(3000, seed=0)
    with_q = LearnerConfig("with-q", WITH_Q, epsilon=0.1)
    without_q = LearnerConfig("without-q", WITHOUT_Q, epsilon=0.1)
    seen: list[int] = []
    report = replay_experiment(examples, [without_q, with_q], progress=seen.append)
    assert seen[-1] == 3000 and report.n == 3000
    q, no_q = report.result("with-q"), report.result("without-q")
    assert report.best is not None and report.best.config.name == "with-q"
    assert q.snips.value > no_q.snips.value + 0.2  # per-context preferences need -q CA
    assert report.overlaps_runner_up is False
    assert abs(report.logged.value - sum(e.reward for e in examples) / 3000) < 1e-12
    assert q.snips.value > report.logged.high  # better than the uniform logging policy
    assert (
        q.n == 3000
        and 0 < q.effective_sample_size < 3000
        and q.max_weight == pytest.approx((0.9 + 0.1 / 5) * 5)
    )
    for config, result in ((with_q, q), (without_q, no_q)):
        truth = _true_progressive_value(config, examples, population)
        assert result.ips.low <= truth <= result.ips.high, (config.name, truth, result.ips)
        assert result.snips.low <= truth <= result.snips.high, (config.name, truth, result.snips)


def test_default_grid_picks_an_interaction_config() -> None:
    examples, _ = _uniform_log(1500, seed=3)
    report = replay_experiment(examples, default_configs())
    assert report.best is not None and "-q CA" in report.best.config.vw_args
    values = [r.snips.value for r in report.results]
    assert values == sorted(values, reverse=True)


def test_replay_rejects_bad_input() -> None:
    examples, _ = _uniform_log(5, seed=0)
    with pytest.raises(InvalidInputError):
        replay_experiment(examples, [])
    with pytest.raises(InvalidInputError):
        replay_experiment(examples, [LearnerConfig("a"), LearnerConfig("a")])
    empty = replay_experiment([], [LearnerConfig("a")])
    assert empty.n == 0 and empty.best is None and empty.warnings


def _cli() -> typer.Typer:
    """The real `recloop` command line (subcommand `experiment`)."""
    return cli_app


def test_cli_compares_configs_from_a_dsjson_file(tmp_path: Path) -> None:
    examples, _ = _uniform_log(800, seed=2)
    path = tmp_path / "log.dsjson"
    path.write_bytes(b"\n".join(dsjson_lines(examples)) + b"\n")
    args = ["--log", str(path), "--learner", f"q={WITH_Q};epsilon=0.1"]
    args += ["--learner", f"plain={WITHOUT_Q};epsilon=0.1"]
    result = runner.invoke(_cli(), ["experiment", *args, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["best"] == "q" and out["n"] == 800 and len(out["results"]) == 2
    table = runner.invoke(_cli(), ["experiment", *args])
    assert table.exit_code == 0, table.output
    assert "best" in table.output and "logged policy" in table.output
    bad = runner.invoke(_cli(), ["experiment", "--log", str(path), "--learner", "oops"])
    assert bad.exit_code == 2


def test_cli_reads_a_loop_store(tmp_path: Path) -> None:
    population = SyntheticPopulation(seed=4)
    clock = FakeClock()
    with Loop.open(tmp_path, start=False, clock=clock, exp_unit_seconds=1.0) as lp:
        for _ in range(100):
            ctx = population.context()
            d = lp.rank(ctx, population.actions())
            if population.reward(ctx, d.chosen):
                lp.reward(d.event_id, 1.0)
            clock.advance(0.01)
        clock.advance(2)
        lp.step()
    result = runner.invoke(
        _cli(),
        [
            "experiment",
            "--data-dir",
            str(tmp_path),
            "--learner",
            "q=-q CA",
            "--learner",
            "g=;explorer=greedy",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 100
    missing = runner.invoke(_cli(), ["experiment", "--data-dir", str(tmp_path / "nope")])
    assert missing.exit_code == 2
