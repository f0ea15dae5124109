"""Does the top-K off-policy correction pay off when the logger is strongly biased?

The designed case: a shop whose logger shows items by popularity alone (softmax of
3 x log-popularity, a 20% uniform floor, no relevance), where the popular items are the
*less* appealing ones (``popularity_appeal=-0.6``). Plain REINFORCE imitates the logger's
rewarded choices, so it inherits the bias; the corrected variant reweights by pi/beta and
should move towards what users like. Both are trained on the same log with the same
pre-trained embeddings, per seed, and judged against the ground-truth user model: the true
expected reward of each user's top-10 list (no sampling noise) and the cumulative reward of
simulated 10-step sessions (mean and 95% interval over all seeds' sessions).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.common import cli, figure, mean_figure, print_table, smoke
from recloop.agents.datasets import build_trajectories
from recloop.agents.embeddings import pretrain_embeddings
from recloop.agents.reinforce_topk import ReinforceTopK, ReinforceTopKConfig
from recloop.experiments.shop_judging import agent_recommender, true_topk_reward
from recloop.simulators.ecommerce import (
    EcommerceWorld,
    from_ecommerce,
    interactive_returns,
    popularity_recommender,
    strongly_biased_config,
)

BENCH = "agents_biased_logging"
LAST_N = 5


def main(quick: bool) -> list[dict[str, Any]]:
    seeds = [0, 1] if smoke() else [0, 1, 2] if quick else [0, 1, 2, 3, 4]
    events = 10_000 if smoke() else 100_000
    sessions = 50 if smoke() else 500 if quick else 1000
    returns: dict[str, list[float]] = {}
    lists: dict[str, list[float]] = {}
    for seed in seeds:
        world = EcommerceWorld(strongly_biased_config(seed))
        cfg = world.config
        raw = world.generate(events)
        traj = build_trajectories(from_ecommerce(raw, cfg.n_users, cfg.n_items), LAST_N)
        embeddings, _ = pretrain_embeddings(traj)
        engaged = np.bincount(raw.item, weights=raw.reward, minlength=cfg.n_items)
        recs = {"popularity": popularity_recommender(engaged)}
        for name, correction in (("reinforce", False), ("reinforce_topk", True)):
            agent = ReinforceTopK(
                cfg.n_users,
                cfg.n_items,
                ReinforceTopKConfig(weight_cap=10.0, correction=correction, seed=seed),
                embeddings,
            )
            agent.fit(traj)
            recs[name] = agent_recommender(agent, LAST_N)
            lists.setdefault(name, []).append(true_topk_reward(world, agent, LAST_N))
        for name, rec in recs.items():
            got = interactive_returns(world, rec, sessions=sessions, seed=seed, last_n=LAST_N)
            returns.setdefault(name, []).extend(got.tolist())
    rows = []
    for name, values in returns.items():
        rows.append(mean_figure(BENCH, f"{name}_session_return", values, seeds=len(seeds)))
    for name, values in lists.items():
        rows.append(
            figure(
                BENCH,
                f"{name}_top10_true_reward",
                float(np.mean(values)),
                None,
                len(values),
                per_seed=[round(v, 3) for v in values],
            )
        )
    print_table("REINFORCE with and without top-K correction, strongly biased logger", rows)
    return rows


if __name__ == "__main__":
    cli(main, "top-K off-policy correction under a strongly biased logger")
