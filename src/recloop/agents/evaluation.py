"""Judging agents offline: ranking metrics on the time-split test set.

Offline, every engaged test step is one evaluation state: the agent ranks the catalogue for
(user, history) and the item the user went on to engage with is the hit. Baselines (random,
popularity) are ranked the same way, so every row of a comparison is measured alike. Judging
in the synthetic shop's simulated sessions: ``recloop.experiments.shop_judging``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from recloop.agents.base import Ranker
from recloop.agents.datasets import Trajectories
from recloop.core.errors import InvalidInputError
from recloop.evaluation.ranking import RankingReport, evaluate_ranking

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
