"""`recloop estimate-offline` on files: CSV/Parquet logs, .npy policies, policies by name."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from recloop.cli import app
from recloop.evaluation.logdata import read_log, write_log
from recloop.evaluation.synthetic import Evaluation, SyntheticBandit

runner = CliRunner()


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ope")
    world = SyntheticBandit(seed=2, n_actions=4, dim=3, logging_beta=1.0)
    data, q = world.log(3_000)
    policy = Evaluation(beta=4.0)
    probs = policy.probabilities(data.context, q)
    write_log(tmp / "log.csv", data)
    write_log(tmp / "log.parquet", data)
    np.save(tmp / "policy.npy", probs)
    return tmp, world.true_value(policy, n=300_000)


def _json(args):
    result = runner.invoke(app, ["estimate-offline", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_table_json_and_plot_from_csv_and_parquet(logged):
    tmp, truth = logged
    for name in ("log.csv", "log.parquet"):
        out = _json(
            [
                "--log", str(tmp / name),
                "--policy-probs", str(tmp / "policy.npy"),
                "--estimators", "dm,ips,snips,dr,sndr,switch-dr,dr-os,clipped-ips,clipped-dr",
                "--reward-model", "ridge",
                "--plot", str(tmp / f"{name}.png"),
            ]
        )  # fmt: skip
        est = {e["estimator"].split("(")[0]: e for e in out["estimates"]}
        assert set(est) == {"dm", "ips", "snips", "dr", "sndr", "switch-dr", "dr-os",
                            "clipped-ips", "clipped-dr"}  # fmt: skip
        for key in ("ips", "snips", "dr", "sndr"):
            e = est[key]
            assert e["low"] < e["value"] < e["high"]
            assert abs(e["value"] - truth) < 0.05, (key, e, truth)
        assert out["overlap"]["n"] == 3_000
        assert 0 < out["overlap"]["ess_ratio"] <= 1
        assert out["reward_model"].startswith("ridge (3-fold")
        assert (tmp / f"{name}.png").stat().st_size > 1000
    table = runner.invoke(
        app,
        ["estimate-offline", "--log", str(tmp / "log.csv"), "--policy-probs",
         str(tmp / "policy.npy"), "--estimators", "ips,snips", "--no-plot"],
    )  # fmt: skip
    assert table.exit_code == 0, table.output
    assert "snips" in table.stdout and "effective sample size" in table.stdout


def test_bootstrap_intervals_from_the_cli(logged):
    tmp, _ = logged
    out = _json(["--log", str(tmp / "log.csv"), "--policy-probs", str(tmp / "policy.npy"),
                 "--estimators", "ips", "--bootstrap", "200", "--no-plot"])  # fmt: skip
    assert out["estimates"][0]["method"] == "bootstrap(200)"


def test_policy_by_name_matches_its_probabilities(logged):
    tmp, _ = logged
    data = read_log(tmp / "log.csv")
    uniform = np.full((data.n_rows, data.n_actions), 1.0 / data.n_actions)
    np.save(tmp / "uniform.npy", uniform)
    by_name = _json(["--log", str(tmp / "log.csv"), "--policy", "uniform", "--explorer",
                     "softmax", "--estimators", "ips,snips", "--no-plot"])  # fmt: skip
    by_probs = _json(["--log", str(tmp / "log.csv"), "--policy-probs", str(tmp / "uniform.npy"),
                      "--estimators", "ips,snips", "--no-plot"])  # fmt: skip
    assert by_name["estimates"] == by_probs["estimates"]


def test_poor_overlap_is_warned(tmp_path):
    world = SyntheticBandit(seed=3, n_actions=6, logging_beta=8.0, logging_epsilon=0.02)
    data, q = world.log(2_000)
    write_log(tmp_path / "log.csv", data)
    # the opposite of the logger: the worst action, deterministically
    probs = np.eye(6)[q.argmin(axis=1)]
    np.save(tmp_path / "p.npy", probs)
    out = _json(["--log", str(tmp_path / "log.csv"), "--policy-probs", str(tmp_path / "p.npy"),
                 "--estimators", "ips,snips", "--no-plot"])  # fmt: skip
    assert any("poor overlap" in w for w in out["warnings"]), out["warnings"]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("no-propensity", "missing column"),
        ("bad-shape", "shape"),
        ("both-policies", "--policy or --policy-probs"),
        ("unknown-policy", "neither a policy kind"),
        ("unknown-estimator", "unknown estimator"),
        ("non-numeric", "non-numeric"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path, logged, setup, message):
    tmp, _ = logged
    log, policy = tmp / "log.csv", ["--policy-probs", str(tmp / "policy.npy")]
    extra: list[str] = []
    if setup == "no-propensity":
        (tmp_path / "bad.csv").write_text("action,reward\n0,1\n")
        log = tmp_path / "bad.csv"
    elif setup == "bad-shape":
        np.save(tmp_path / "p.npy", np.ones((5, 4)) / 4)
        policy = ["--policy-probs", str(tmp_path / "p.npy")]
    elif setup == "both-policies":
        policy += ["--policy", "uniform"]
    elif setup == "unknown-policy":
        policy = ["--policy", "no-such-thing"]
    elif setup == "unknown-estimator":
        extra = ["--estimators", "ips,magic"]
    elif setup == "non-numeric":
        (tmp_path / "bad.csv").write_text("action,reward,propensity\n0,yes,0.5\n")
        log = tmp_path / "bad.csv"
    result = runner.invoke(
        app, ["estimate-offline", "--log", str(log), *policy, *extra, "--no-plot"]
    )
    assert result.exit_code == 2
    assert message in result.output


def test_a_loops_joined_log_offline_matches_its_online_evaluator(tmp_path):
    """Offline (CLI, on the loop's store) and online (the pipeline's evaluator) estimates of
    the same candidate on the same joined rows are the same numbers: one implementation."""
    from recloop import Loop
    from recloop.core.clock import FakeClock
    from recloop.simulators.synthetic import SyntheticPopulation

    clock = FakeClock()
    population = SyntheticPopulation(seed=4)
    with Loop.open(tmp_path, start=False, clock=clock, exp_unit_seconds=1.0, seed=4) as lp:
        lp.register_policy("always-politics", "fixed", {"action_id": "politics"})
        for i in range(400):
            ctx = population.context()
            d = lp.rank(ctx, population.actions(), event_id=f"e{i}")
            if r := population.reward(ctx, d.chosen):
                lp.reward(d.event_id, r)
            clock.advance(0.01)
        clock.advance(5)
        lp.step()
        online = next(c for c in lp.evaluations()["candidates"] if c["name"] == "always-politics")
    assert online["n"] == 400
    out = _json(["--data-dir", str(tmp_path), "--policy", 'fixed:{"action_id": "politics"}',
                 "--estimators", "ips,snips,dm,dr,sndr", "--reward-model", "ridge",
                 "--no-plot"])  # fmt: skip
    offline = {e["estimator"]: e for e in out["estimates"]}
    for name in ("ips", "snips"):
        for key in ("value", "low", "high"):
            assert offline[name][key] == pytest.approx(online[name][key], rel=1e-9), (name, key)
    # the reward model (named context/action features, cross-fitted) is good enough for DR
    # to agree with IPS on the same rows
    assert offline["dr"]["low"] < offline["ips"]["value"] < offline["dr"]["high"]
    assert offline["dm"]["value"] == pytest.approx(offline["snips"]["value"], abs=0.1)


def test_a_saved_vw_model_is_an_evaluation_policy(tmp_path):
    """Train a VW model on one log, save it, evaluate it on another log by file name: its
    estimate beats the logging policy's average and is near its true value."""
    from recloop.core.types import Action, Decision, JoinedExample
    from recloop.policies.vw import VWLearner

    world = SyntheticBandit(seed=6, n_actions=4, dim=3, logging_beta=0.0)
    train, _ = world.log(4_000, stream=1)
    learner = VWLearner("--cb_adf --cb_type mtr -q CA --quiet")
    acts = tuple(Action(str(a)) for a in range(4))
    for i in range(train.n_rows):
        ctx = {f"x_{j}": float(v) for j, v in enumerate(train.context[i])}
        k = int(train.action[i])
        p = float(train.pscore[i])
        d = Decision(f"e{i}", "t", float(i), ctx, acts, tuple(a.id for a in acts), (p,) * 4,
                     str(k), k, p, "logged", "logged")  # fmt: skip
        learner.learn_one(JoinedExample(d, float(train.reward[i]), 1, False, float(i), i + 1))
    (tmp_path / "model.vw").write_bytes(learner.snapshot())
    test, q_test = world.log(3_000, stream=2)
    write_log(tmp_path / "test.csv", test)
    from recloop.evaluation.offline import policy_action_dist
    from recloop.kinds.policies import load_policy

    greedy = policy_action_dist(load_policy(str(tmp_path / "model.vw")), test)
    truth = float((greedy * q_test).sum(axis=1).mean())  # on these rows' contexts
    out = _json(["--log", str(tmp_path / "test.csv"), "--policy", str(tmp_path / "model.vw"),
                 "--estimators", "ips,snips", "--no-plot"])  # fmt: skip
    snips = next(e for e in out["estimates"] if e["estimator"] == "snips")
    assert snips["value"] > out["logged_average_reward"] + 0.05, (snips, out)
    assert snips["low"] <= truth <= snips["high"], (snips, truth)
    broken = tmp_path / "broken.vw"
    broken.write_bytes(b"not a model")
    bad = runner.invoke(app, ["estimate-offline", "--log", str(tmp_path / "test.csv"),
                              "--policy", str(broken), "--no-plot"])  # fmt: skip
    assert bad.exit_code == 2 and "not a loadable VW model" in bad.output


def test_slates_with_positions_from_the_cli(tmp_path):
    """A log with a position column and a rows x actions x positions policy: IPS uses the
    probability at the logged slot, IIPS sums the per-slot means."""
    from recloop.evaluation.logdata import BanditData
    from recloop.evaluation.offpolicy import IIPS, IPS

    rng = np.random.default_rng(0)
    n, actions, slots = 600, 5, 3
    data = BanditData(
        action=rng.integers(0, actions, n),
        reward=(rng.random(n) < 0.3).astype(float),
        pscore=np.full(n, 1.0 / actions),
        n_actions=actions,
        position=np.arange(n) % slots,
    )
    write_log(tmp_path / "slates.parquet", data)
    probs = rng.dirichlet(np.ones(actions), size=(n, slots)).transpose(0, 2, 1)
    np.save(tmp_path / "p.npy", probs)
    out = _json(["--log", str(tmp_path / "slates.parquet"), "--policy-probs",
                 str(tmp_path / "p.npy"), "--estimators", "ips,iips", "--no-plot"])  # fmt: skip
    est = {e["estimator"]: e["value"] for e in out["estimates"]}
    assert est["ips"] == pytest.approx(IPS().estimate(data, probs))
    assert est["iips"] == pytest.approx(IIPS().estimate(data, probs))
    assert est["iips"] == pytest.approx(slots * est["ips"])  # equal slot counts
    flat = tmp_path / "flat.npy"
    np.save(flat, probs[:, :, 0])  # no positions: refused
    bad = runner.invoke(app, ["estimate-offline", "--log", str(tmp_path / "slates.parquet"),
                              "--policy-probs", str(flat), "--no-plot"])  # fmt: skip
    assert bad.exit_code == 2 and "positions" in bad.output
