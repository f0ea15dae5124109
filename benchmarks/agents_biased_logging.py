"""Does the top-K off-policy correction pay off when the logger is strongly biased?

On the synthetic e-commerce world with a popularity-only logger, REINFORCE with and without
the correction are trained on the same log (per-step rewards, gamma 0) and evaluated
interactively against the ground-truth user model (cumulative reward per 10-step session,
300 sessions), over several seeds; random and popularity are the baselines.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.common import cli, figure, print_table
from recloop.agents.datasets import build_trajectories, from_ecommerce
from recloop.agents.reinforce_topk import ReinforceTopK, ReinforceTopKConfig
from recloop.simulators.ecommerce import (
    EcommerceConfig,
    EcommerceWorld,
    Recommender,
    interactive_returns,
    popularity_recommender,
    random_recommender,
)

BENCH = "agents_biased_logging"
LAST_N = 5


def agent_recommender(agent: ReinforceTopK, n_items: int) -> Recommender:
    def recommend(user: int, history: Any, shown: set[int]) -> int:
        h = np.full((1, LAST_N), n_items, dtype=np.int64)
        recent = list(history)[-LAST_N:]
        if recent:
            h[0, -len(recent) :] = recent
        ranked = agent.rank(np.array([user]), h, k=min(n_items, len(shown) + 1))[0]
        return next(int(i) for i in ranked if int(i) not in shown)

    return recommend


def main(quick: bool) -> list[dict[str, Any]]:
    seeds = [0, 1] if quick else [0, 1, 2]
    events = 10_000 if quick else 40_000
    results: dict[str, list[float]] = {}
    for seed in seeds:
        cfg = EcommerceConfig(
            n_users=300,
            n_items=150,
            seed=seed,
            logging_popularity=2.0,
            logging_relevance=0.0,
            logging_uniform=0.1,
        )
        world = EcommerceWorld(cfg)
        raw = world.generate(events)
        traj = build_trajectories(from_ecommerce(raw, cfg.n_users, cfg.n_items), LAST_N)
        engaged = np.bincount(raw.item, weights=raw.reward, minlength=cfg.n_items)
        recommenders: dict[str, Recommender] = {
            "random": random_recommender(cfg.n_items, seed),
            "popularity": popularity_recommender(engaged),
        }
        for name, correction in (("reinforce", False), ("reinforce_topk", True)):
            agent = ReinforceTopK(
                cfg.n_users,
                cfg.n_items,
                ReinforceTopKConfig(epochs=10, gamma=0.0, correction=correction, seed=seed),
            )
            agent.fit(traj)
            recommenders[name] = agent_recommender(agent, cfg.n_items)
        for name, rec in recommenders.items():
            returns = interactive_returns(world, rec, sessions=300, seed=seed)
            results.setdefault(name, []).extend(returns.tolist())
    rows = []
    for name, values in results.items():
        v = np.asarray(values)
        half = 1.96 * v.std(ddof=1) / np.sqrt(len(v))
        rows.append(
            figure(
                BENCH,
                f"{name}_session_return",
                float(v.mean()),
                None,
                len(v),
                low=float(v.mean() - half),
                high=float(v.mean() + half),
                seeds=len(seeds),
            )
        )
    print_table("REINFORCE with and without top-K correction, strongly biased logger", rows)
    return rows


if __name__ == "__main__":
    cli(main, "top-K off-policy correction under a strongly biased logger")
