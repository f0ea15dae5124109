"""Judging agents interactively in the synthetic shop (``recloop.simulators.ecommerce``):
the agent as the world's recommender, and the world's ground-truth reward of its lists.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recloop.agents.base import Ranker
from recloop.simulators.ecommerce import EcommerceWorld, Recommender


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
