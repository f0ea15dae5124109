"""RecoGym through recloop's Environment: the adapter keeps the interface's contract, and
recloop's decision loop (VW contextual bandit, learning online) beats random on clicks.
Needs the ``sims`` extra and RecoGym (the slow stage installs both)."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

from recloop.experiments.online_evaluation import evaluate_in_environment
from recloop.simulators.environment import RandomRanker, play
from recloop.simulators.recogym_adapter import RecoGym, RecoGymConfig

pytestmark = pytest.mark.slow  # the slow stage installs RecoGym and runs these


@pytest.fixture(autouse=True)
def needs_recogym() -> None:
    """Asked per test (not at import), so the fast stage deselects these without a skip."""
    if importlib.util.find_spec("recogym") is None:
        pytest.skip("RecoGym is not installed (pip install --no-deps recogym==0.1.3.0)")


def test_the_adapter_keeps_the_environment_contract():
    env = RecoGym(RecoGymConfig(users=5))
    request = env.reset(0)
    assert request.candidates.tolist() == list(range(10))
    assert request.item_features.shape == (10, 10) and request.cross_features.shape == (10, 2)
    share = request.user_features[:10]
    assert share.sum() == pytest.approx(1.0)  # the organic views before the first bandit step
    assert np.array_equal(request.cross_features[:, 1], (share > 0).astype(float))
    with pytest.raises(ValueError, match="at least 1 distinct"):
        env.step([])
    answered, _ = play(env, RandomRanker(0), seed=0)
    assert answered == env.totals["steps"] > 20
    assert env.totals["organic_views"] > 0
    again = RecoGym(RecoGymConfig(users=5))
    play(again, RandomRanker(0), seed=0)
    assert again.totals == env.totals  # reproducible from the seed


def test_the_decision_loop_beats_random_on_clicks_in_recogym():
    rows = {
        r["policy"]: r
        for r in evaluate_in_environment(
            "recogym", ["random", "vw-bandit"], [0, 1, 2], jobs=os.cpu_count() or 1
        )
    }
    bandit, random = rows["vw-bandit"]["reward_per_user"], rows["random"]["reward_per_user"]
    assert bandit["n"] > 1000 and random["n"] > 1000  # 500 RecoGym users x 3 seeds
    assert bandit["low"] > random["high"], rows
    # judged beside RecoGym's strongest built-in agent, which learns nothing across users
    organic = rows["organic-views-greedy"]["reward_per_user"]
    assert organic["low"] > random["high"], rows
    assert rows["vw-bandit"]["against"]["baseline"] == "organic-views-greedy"
