"""The whole deep RL path by the CLI: generate -> train -> evaluate-agents -> serve (a loop's
model store, or a candidate policy), and the clear errors of bad input on the way."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch)")

from recloop import Loop
from recloop.cli import app
from recloop.core.clock import FakeClock
from recloop.core.errors import InvalidInputError, ModelRejectedError

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def said(result) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A small generated shop and a behaviour-cloning agent trained on it."""
    tmp = tmp_path_factory.mktemp("shop")
    data = tmp / "shop.csv"
    result = invoke("generate", "-o", data, "--events", 6000, "--users", 60, "--items", 30)
    assert result.exit_code == 0, result.output
    run = tmp / "bc"
    result = invoke(
        "train", "--algo", "bc", "--data", data, "--last-n", 5, "--epochs", 4, "-o", run
    )
    assert result.exit_code == 0, result.output
    return tmp, data, run


def test_generate_writes_the_log_and_its_world(shop):
    tmp, data, _ = shop
    header = data.read_text().splitlines()[0].split(",")
    assert header == ["user", "item", "behaviour", "timestamp", "propensity", "session"]
    world = json.loads((tmp / "shop.csv.world.json").read_text())
    assert world["n_users"] == 60 and world["n_items"] == 30 and world["rewards"]["buy"] == 3.0


def test_train_writes_the_agent_its_curves_and_metrics(shop):
    _, _, run = shop
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["algo"] == "bc" and len(metrics["curve"]) == 4
    assert len(metrics["validation_ndcg"]) == 4
    assert metrics["curve"][-1] < metrics["curve"][0]  # it learned
    assert metrics["samples_per_second"] > 0 and metrics["test"]["n"] > 0
    lines = (run / "curve.csv").read_text().splitlines()
    assert lines[0] == "epoch,loss,validation_ndcg@10" and len(lines) == 5
    assert (run / "curves.png").stat().st_size > 1000
    with zipfile.ZipFile(run / "agent.zip") as z:
        meta = json.loads(z.read("meta.json"))
    assert meta["algo"] == "bc" and meta["last_n"] == 5 and meta["training"]["seed"] == 0


def test_evaluate_agents_compares_the_agent_with_the_baselines(shop):
    tmp, data, run = shop
    result = invoke(
        "evaluate-agents", "--data", data, "-a", run, "--sessions", 100, "-o", tmp / "ev"
    )
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads((tmp / "ev" / "evaluation.json").read_text())}
    assert set(rows) == {"random", "popularity", "bc"}
    for name in rows:
        assert rows[name]["session_reward"]["n"] == 100
        assert rows[name]["ndcg@10"]["low"] <= rows[name]["ndcg@10"]["value"]
        assert -1.0 <= rows[name]["intra_list_similarity"]["value"] <= 1.0
    assert rows["bc"]["ndcg@10"]["value"] > rows["random"]["ndcg@10"]["high"]
    assert rows["bc"]["session_reward"]["value"] > rows["random"]["session_reward"]["value"]
    # the popular list is one list for everyone: one similarity, no spread
    assert rows["popularity"]["intra_list_similarity"]["low"] == pytest.approx(
        rows["popularity"]["intra_list_similarity"]["high"]
    )
    assert (tmp / "ev" / "evaluation.png").exists()
    assert "agents on the test split" in said(result)


def test_a_trained_agent_is_served_from_the_loop_model_store(shop, tmp_path):
    """`train --data-dir --activate` puts the agent in the loop's model store and pins it:
    the loop serves it (logged with its probabilities), the bandit learner's next versions
    do not replace it, and the learner never resumes from the agent's version."""
    _, data, _ = shop
    result = invoke(
        "train", "--algo", "bc", "--data", data, "--last-n", 5, "--epochs", 2,
        "-o", tmp_path / "run", "--data-dir", tmp_path / "data", "--activate", "--no-plot",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "stored as model version 1" in said(result)
    clock = FakeClock()
    with Loop.open(tmp_path / "data", start=False, clock=clock, exp_unit_seconds=1.0,
                   checkpoint_every_examples=10) as loop:  # fmt: skip
        assert loop.model_version == "1"
        actions = [{"id": f"i{i}"} for i in range(10)] + [{"id": "not-an-item"}]
        for n in range(30):
            d = loop.rank({"user_id": f"u{n % 60}", "recent_items": ["i3"]}, actions)
            assert d.policy == "bc" and d.model_version == "1"
            assert sum(d.probabilities) == pytest.approx(1.0)
            loop.reward(d.event_id, 1.0)
            clock.advance(0.01)
        clock.advance(5.0)
        loop.step()
        versions = loop.model_versions()
        assert len(versions) >= 2 and "learner_offset" in versions[0].meta  # VW learned
        assert loop.model_version == "1"  # still the pinned agent
        loop.follow_latest()
        assert loop.model_version == versions[0].version


def test_a_saved_agent_is_a_candidate_policy_kind(shop, tmp_path):
    _, _, run = shop
    clock = FakeClock()
    with Loop.open(tmp_path, start=False, clock=clock, exp_unit_seconds=1.0) as loop:
        loop.register_policy("bc-agent", "agent", {"path": str(run)})
        for n in range(50):
            d = loop.rank({"user_id": f"u{n}", "recent_items": []}, [{"id": "i1"}, {"id": "i2"}])
            loop.reward(d.event_id, 1.0)
            clock.advance(0.01)
        clock.advance(5.0)
        loop.step()
        evals = {c["name"]: c for c in loop.evaluations()["candidates"]}
        assert evals["bc-agent"]["n"] == 50
        with pytest.raises(InvalidInputError, match="no saved agent"):
            loop.register_policy("nope", "agent", {"path": str(tmp_path / "missing.zip")})


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--algo", "dqn"], "unknown algorithm 'dqn'"),
        (["--algo", "bc", "--param", "learning_rat=0.1"], "no hyperparameter(s) ['learning_rat']"),
        (["--algo", "bc", "--param", "epochs=many"], "bc.epochs must be an integer"),
        (["--algo", "reinforce", "--param", "correction=true"], "reinforce fixes"),
    ],
)
def test_train_rejects_bad_options_with_a_clear_message(shop, args, message):
    _, data, _ = shop
    result = invoke("train", *args, "--data", data)
    assert result.exit_code == 2
    assert message in said(result), result.output


def test_train_rejects_bad_data_naming_the_problem(tmp_path):
    missing = tmp_path / "missing.csv"
    missing.write_text("user,item,timestamp\nu1,i1,1\n")
    nan = tmp_path / "nan.csv"
    nan.write_text("user,item,behaviour,timestamp\nu1,i1,view,1\n,i2,buy,2\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("user,item,behaviour,timestamp\n")
    for path, message in [
        (missing, "missing column(s) ['behaviour']"),
        (nan, "missing values in row 2"),
        (empty, "no rows"),
    ]:
        result = invoke("train", "--algo", "bc", "--data", path, "-o", tmp_path / "run")
        assert result.exit_code == 2, result.output
        assert message in said(result), result.output


def test_evaluate_agents_rejects_agents_of_another_catalogue_and_broken_files(shop, tmp_path):
    _, _, run = shop
    other = tmp_path / "other.csv"
    assert (
        invoke("generate", "-o", other, "--events", 3000, "--users", 40, "--items", 20).exit_code
        == 0
    )
    result = invoke("evaluate-agents", "--data", other, "-a", run)
    assert result.exit_code == 2 and "another catalogue" in said(result)
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip")
    result = invoke("evaluate-agents", "--data", other, "-a", broken)
    assert result.exit_code == 2 and "not a recloop agent checkpoint" in said(result)


def test_checkpoints_of_another_algorithm_or_catalogue_are_rejected(shop):
    from recloop.agents.checkpoint import load_agent
    from recloop.agents.embeddings import Embeddings
    from recloop.agents.registry import make_agent

    _, _, run = shop
    blob = (run / "agent.zip").read_bytes()
    assert load_agent(blob, algo="bc", n_items=30).algo == "bc"
    with pytest.raises(ModelRejectedError, match="is a 'bc' agent, expected 'ddpg'"):
        load_agent(blob, algo="ddpg")
    with pytest.raises(ModelRejectedError, match="trained on 30 items, expected 31"):
        load_agent(blob, n_items=31)
    f32 = np.float32
    wrong_dim = Embeddings(np.zeros((60, 8), f32), np.zeros((30, 4), f32))
    for algo in ("bc", "reinforce-topk"):
        with pytest.raises(InvalidInputError, match="pre-trained embeddings are 60 users x 8"):
            make_agent(algo, 60, 30, embeddings=wrong_dim)
    wrong_items = Embeddings(np.zeros((60, 4), f32), np.zeros((29, 4), f32))
    for algo in ("ddpg", "bcq"):
        with pytest.raises(InvalidInputError, match="29 items"):
            make_agent(algo, 60, 30, embeddings=wrong_items)


@pytest.mark.parametrize("algo", ["reinforce-topk", "bc", "ddpg", "bcq"])
def test_serving_scores_only_the_candidates_exactly_as_the_catalogue_scorer(algo):
    """The exported candidate scorer (what a rank request runs) gives the catalogue scorer's
    scores at those items, for every scorer kind; the Policy ranks unknown ids last."""
    import torch

    from recloop.agents.checkpoint import load_agent, save_agent
    from recloop.agents.datasets import build_trajectories
    from recloop.agents.policy import AgentPolicy
    from recloop.agents.registry import make_agent
    from recloop.core.types import Action
    from recloop.simulators.ecommerce import EcommerceConfig, EcommerceWorld, from_ecommerce

    cfg = EcommerceConfig(n_users=40, n_items=25, seed=3)
    log = from_ecommerce(EcommerceWorld(cfg).generate(3_000), cfg.n_users, cfg.n_items)
    agent = make_agent(algo, 40, 25, {"epochs": 1, "embedding_dim": 8})
    agent.fit(build_trajectories(log, last_n=4))
    saved = load_agent(save_agent(agent, list(log.user_ids), list(log.item_ids), last_n=4))
    g = torch.Generator().manual_seed(0)
    users = saved.user_vectors[torch.randint(40, (6,), generator=g)]
    history = torch.randint(26, (6, 4), generator=g)
    items = torch.randint(25, (6, 7), generator=g)
    full = saved.scores(users, history)
    torch.testing.assert_close(saved.candidate_scores(users, history, items), full.gather(1, items))
    policy = AgentPolicy(saved)
    context = {"user_id": "u3", "recent_items": ["i1", "i2"]}
    ids = ["i5", "i9", "nope", "i0"]
    scores = policy.scores(context, [Action(i) for i in ids])
    catalogue = policy.catalogue_scores(context).numpy()
    np.testing.assert_allclose(scores[[0, 1, 3]], catalogue[[5, 9, 0]], rtol=1e-5)
    assert scores[2] < scores[[0, 1, 3]].min()


def test_a_saved_agent_loads_and_scores_without_the_training_code(shop):
    """In a fresh interpreter where every agent class module is blocked from importing, the
    checkpoint still loads and scores: it needs torch, not the code that trained it."""
    import subprocess
    import sys

    _, _, run = shop
    blocked = [
        "recloop.agents.bc",
        "recloop.agents.bcq",
        "recloop.agents.ddpg",
        "recloop.agents.reinforce_topk",
        "recloop.agents.registry",
        "recloop.agents.trainer",
    ]
    code = (
        "import sys\n"
        f"for m in {blocked!r}: sys.modules[m] = None\n"
        "from recloop.agents.policy import AgentPolicy\n"
        "from recloop.core.types import Action\n"
        f"p = AgentPolicy.from_bytes(open({str(run / 'agent.zip')!r}, 'rb').read())\n"
        "s = p.scores({'user_id': 'u1', 'recent_items': ['i2']}, [Action('i1'), Action('i3')])\n"
        "print(p.name, len(s))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["bc", "2"]


def test_evaluate_agents_runs_rankers_in_a_simulator_reproducibly():
    args = ["evaluate-agents", "--env", "fusion-shop", "-p", "random", "-p", "fused:0.4"]
    args += ["--seeds", "0,1"]
    first = invoke(*args, "--json")
    assert first.exit_code == 0, first.output
    rows = {r["policy"]: r for r in json.loads(first.stdout)}
    assert rows["random"]["runs"] == 2
    assert rows["fused:0.4"]["reward"]["low"] > rows["random"]["reward"]["high"]
    assert rows["fused:0.4"]["ctr"]["value"] > rows["random"]["ctr"]["value"]
    again = invoke(*args, "--json")

    def figures(out: str) -> list[dict]:
        """All but the wall-clock time of the runs."""
        return [{k: v for k, v in r.items() if k != "seconds_per_run"} for r in json.loads(out)]

    assert figures(again.stdout) == figures(first.stdout)  # reproducible from the seeds
    for bad, message in [
        (["--env", "nope", "-p", "random"], "unknown environment 'nope'"),
        (["--env", "fusion-shop", "-p", "drn"], "unknown policy 'drn' for fusion-shop"),
        (["--env", "fusion-shop", "-p", "fused:x"], "write fused:NUMBER"),
        (["--env", "fusion-shop"], "give at least one --policy"),
        (["--env", "fusion-shop", "-p", "random", "--seeds", "a"], "comma-separated integers"),
        ([], "give --data LOG and --agent RUN"),
    ]:
        result = invoke("evaluate-agents", *bad)
        assert result.exit_code == 2 and message in said(result), (bad, result.output)
