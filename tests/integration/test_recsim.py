"""RecSim's interest-evolution environment through recloop's Environment: the adapter
keeps the interface's contract, and a recloop agent (DRN learning online) beats random on
watch time. Needs the ``sims`` extra (the slow stage installs it)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest

from recloop.experiments.online_evaluation import evaluate_in_environment
from recloop.simulators.environment import Feedback, RandomRanker, play
from recloop.simulators.recsim_adapter import RecSimConfig, RecSimInterestEvolution

pytestmark = pytest.mark.slow  # the slow stage installs the sims extra and runs these


@pytest.fixture(autouse=True)
def needs_recsim() -> Iterator[None]:
    """Asked per test (not at import), so the fast stage deselects these without a skip."""
    pytest.importorskip("recsim", reason="RecSim is not installed (pip install 'recloop[sims]')")
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    before = torch.get_num_threads()
    # as `recloop evaluate-agents --env` runs: the figures repeat exactly
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_the_adapter_keeps_the_environment_contract():
    env = RecSimInterestEvolution(RecSimConfig(users=3, candidates=10, slate_size=2))
    request = env.reset(0)
    # topic one-hot + its revealed quality and never-shown flag; click share and rate
    assert request.item_features.shape == (10, 22) and request.cross_features.shape == (10, 2)
    assert np.all(request.item_features[:, -1] == 1.0)  # nothing revealed yet
    assert request.user_features.shape == (25,) and np.all(request.user_features == 0)
    with pytest.raises(ValueError, match="at least 2 distinct"):
        env.step([1])
    seen: list[Feedback] = []
    answered, _ = play(env, RandomRanker(0), seed=0, on_step=lambda r, f: seen.append(f))
    assert answered == env.totals["steps"] > 3
    assert sum(f.ends_session for f in seen) == 3  # one per user
    watched = np.concatenate([f.observations["watch_time"] for f in seen])
    assert watched.sum() == pytest.approx(env.totals["watch_time"])
    assert {"click", "quality", "cluster"} <= set(seen[0].observations)
    assert env.totals["clicks"] > 0 and env.totals["watch_time"] > 0
    again = RecSimInterestEvolution(RecSimConfig(users=3))
    play(again, RandomRanker(0), seed=0)
    assert again.totals == env.totals  # reproducible from the seed


def test_drn_learns_past_random_and_the_myopic_bandit_judged_against_the_heuristic():
    """Learned behaviour against baselines: DRN (learning online from scratch) beats random
    and the linear Thompson bandit, whose myopia RecSim punishes; the heuristic, always run
    beside it, is the bar its row is judged against (README: DRN trails it)."""
    rows = {
        r["policy"]: r
        for r in evaluate_in_environment(
            "recsim", ["random", "linear-thompson", "drn"], [0, 1, 2], jobs=os.cpu_count() or 1
        )
    }
    per_user = {name: row["reward_per_user"] for name, row in rows.items()}
    assert per_user["drn"]["n"] == per_user["random"]["n"] == 600  # 200 users x 3 seeds
    assert per_user["drn"]["low"] > per_user["random"]["high"], rows
    assert per_user["drn"]["low"] > per_user["linear-thompson"]["high"], rows
    assert per_user["revealed-quality"]["low"] > per_user["linear-thompson"]["high"], rows
    assert rows["drn"]["against"]["baseline"] == "revealed-quality"
