"""Judging agents: offline ranking metrics on the time-split test set, and interactive
reward against the synthetic world's ground-truth user model.

Offline, every engaged test step is one evaluation state: the agent ranks the catalogue for
(user, history) and the item the user went on to engage with is the hit. Interactively, the
agent picks what to show next in simulated sessions (``interactive_returns``). Baselines
(random, popularity) are ranked the same way, so every row of a comparison is measured alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from recloop.agents.base import Ranker
from recloop.agents.datasets import Trajectories
from recloop.core.errors import InvalidInputError
from recloop.evaluation.ranking import RankingReport, evaluate_ranking
from recloop.simulators.ecommerce import EcommerceWorld, Recommender

Ints = NDArray[np.int64]


def engaged_states(test: Trajectories) -> tuple[Ints, Ints, Ints]:
    """(user, history, engaged item) of every engaged test step."""
    rows = np.flatnonzero(test.reward > 0)
    if len(rows) == 0:
        raise InvalidInputError("the test split has no engaged steps to evaluate against")
    return test.user[rows], test.history[rows], test.action[rows]


def popularity_order(train: Trajectories) -> Ints:
    """Items by total reward in the training split, most first."""
    totals = np.bincount(train.action, weights=train.reward, minlength=train.n_items)
    out: Ints = np.argsort(-totals, kind="stable").astype(np.int64)
    return out


def baseline_rankings(train: Trajectories, n_rows: int, k: int, seed: int) -> dict[str, Ints]:
    rng = np.random.default_rng(seed)
    random = np.argsort(rng.random((n_rows, train.n_items)), axis=1)[:, :k]
    popular = np.tile(popularity_order(train)[:k], (n_rows, 1))
    return {"random": random.astype(np.int64), "popularity": popular}


def offline_report(
    agent: Ranker,
    test: Trajectories,
    k: int = 10,
    item_vectors: NDArray[np.float64] | None = None,
) -> RankingReport:
    user, history, truth = engaged_states(test)
    ranked = np.concatenate(
        [
            agent.rank(user[i : i + 4096], history[i : i + 4096], k)
            for i in range(0, len(user), 4096)
        ]
    )
    return evaluate_ranking(ranked, truth, test.n_items, item_vectors)


def agent_recommender(agent: Ranker, last_n: int) -> Recommender:
    """The agent choosing the best item not yet shown this session (the simulator's API)."""
    pad = agent.n_items

    def recommend(user: int, history: Sequence[int], shown: set[int]) -> int:
        h = np.full((1, last_n), pad, dtype=np.int64)
        recent = list(history)[-last_n:]
        if recent:
            h[0, -len(recent) :] = recent
        ranked = agent.rank(np.array([user]), h, k=min(pad, len(shown) + 1))[0]
        return next(int(i) for i in ranked if int(i) not in shown)

    return recommend


def true_topk_reward(world: EcommerceWorld, agent: Ranker, last_n: int, k: int = 10) -> float:
    """Mean ground-truth expected reward of every user's top-k list with an empty history:
    the interactive figure without the sampling noise of simulated sessions."""
    n_users, n_items = world.config.n_users, world.config.n_items
    top = agent.rank(np.arange(n_users), np.full((n_users, last_n), n_items), k=k)
    truth = world.expected_reward(world.initial_tastes)
    return float(np.take_along_axis(truth, top, axis=1).mean())
