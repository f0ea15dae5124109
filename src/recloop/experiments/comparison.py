"""Comparing agents and baselines alike: per-row offline metrics on the test split and the
returns of simulated sessions, pooled over seeds, each figure with a 95% interval.

``recloop evaluate-agents`` fills a :class:`Comparison` from saved agents and a log file;
``benchmarks/agents_compare.py`` fills one from agents it has just trained. Rows of one name
from several seeds are pooled (the interval is over every evaluation state or session).

A harness, not part of an agent: it plays agents in the synthetic shop
(``recloop.simulators.ecommerce``), so it sits in ``experiments`` above both.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from recloop.agents.base import Ranker
from recloop.agents.datasets import InteractionLog, Trajectories
from recloop.agents.evaluation import baseline_rankings, engaged_states
from recloop.core.errors import InvalidInputError
from recloop.evaluation.ranking import (
    hit_at_k,
    intra_list_similarity,
    mean_interval,
    ndcg_at_k,
    precision_at_k,
)
from recloop.experiments.shop_judging import agent_recommender
from recloop.simulators.ecommerce import (
    EcommerceConfig,
    EcommerceWorld,
    Recommender,
    interactive_returns,
    item_id,
    popularity_recommender,
    random_recommender,
    user_id,
)

Ints = NDArray[np.int64]
Floats = NDArray[np.float64]


class Comparison:
    def __init__(self, k: int = 10) -> None:
        self.k = k
        self.values: dict[str, dict[str, list[Floats]]] = defaultdict(lambda: defaultdict(list))
        self.coverage: dict[str, list[float]] = defaultdict(list)
        self.seeds: dict[str, int] = defaultdict(int)

    def add(
        self,
        name: str,
        ranked: Ints,
        truth: Ints,
        n_items: int,
        world: Recommenders | None = None,
        returns: Floats | None = None,
    ) -> None:
        """One seed of ``name``: its top-k lists for the engaged test states, and optionally
        the cumulative rewards of its simulated sessions; with a world, also the lists'
        intra-list similarity under its true item vectors."""
        k = self.k
        metrics = self.values[name]
        metrics[f"ndcg@{k}"].append(ndcg_at_k(ranked, truth))
        metrics[f"hit@{k}"].append(hit_at_k(ranked, truth))
        metrics[f"precision@{k}"].append(precision_at_k(ranked, truth))
        if world is not None and ranked.shape[1] > 1:
            metrics["intra_list_similarity"].append(
                intra_list_similarity(ranked, world.item_vectors)
            )
        if returns is not None:
            metrics["session_reward"].append(returns)
        self.coverage[name].append(len(np.unique(ranked)) / n_items)
        self.seeds[name] += 1

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for name, metrics in self.values.items():
            row: dict[str, Any] = {"name": name, "seeds": self.seeds[name]}
            for metric, parts in metrics.items():
                pooled = np.concatenate(parts)
                iv = mean_interval(pooled)
                row[metric] = {"value": iv.value, "low": iv.low, "high": iv.high, "n": len(pooled)}
            row["coverage"] = float(np.mean(self.coverage[name]))
            out.append(row)
        return out

    def plot(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.rows()
        metrics = [f"ndcg@{self.k}", f"hit@{self.k}"]
        if all("session_reward" in r for r in rows):
            metrics.append("session_reward")
        fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.5))
        names = [r["name"] for r in rows]
        for ax, metric in zip(np.atleast_1d(axes), metrics, strict=True):
            values = np.array([r[metric]["value"] for r in rows])
            err = np.array(
                [
                    [v - r[metric]["low"], r[metric]["high"] - v]
                    for v, r in zip(values, rows, strict=True)
                ]
            ).T
            ax.bar(names, values, yerr=err, capsize=3)
            ax.set_title(f"{metric} (95% interval)")
            ax.tick_params(axis="x", rotation=45)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


def add_baselines(
    comparison: Comparison,
    train: Trajectories,
    test: Trajectories,
    world: Recommenders | None,
    seed: int,
    sessions: int,
    last_n: int,
) -> None:
    """Random and popularity (total engaged reward in the training split), ranked the same
    way as the agents and simulated the same way."""
    _, _, truth = engaged_states(test)
    ranked = baseline_rankings(train, len(truth), comparison.k, seed)
    counts = np.asarray(
        np.bincount(train.action, weights=train.reward, minlength=train.n_items), np.float64
    )
    recommenders = {
        "random": random_recommender(train.n_items, seed),
        "popularity": popularity_recommender(counts),
    }
    for name in ("random", "popularity"):
        returns = None
        if world is not None:
            returns = world.returns(recommenders[name], sessions, seed, last_n)
        comparison.add(name, ranked[name], truth, train.n_items, world, returns)


def add_agent(
    comparison: Comparison,
    name: str,
    agent: Ranker,
    test: Trajectories,
    world: Recommenders | None,
    seed: int,
    sessions: int,
    last_n: int,
) -> None:
    user, history, truth = engaged_states(test)
    k = comparison.k
    ranked = np.concatenate(
        [
            agent.rank(user[i : i + 4096], history[i : i + 4096], k)
            for i in range(0, len(user), 4096)
        ]
    )
    returns = None
    if world is not None:
        returns = world.returns(agent_recommender(agent, last_n), sessions, seed, last_n)
    comparison.add(name, ranked, truth, agent.n_items, world, returns)


class Recommenders:
    """A generated world seen through a log's vocabulary: the log names users and items by
    id (``u3``, ``i17``, sorted as strings), the world by index; recommenders work in the
    log's indices and are translated both ways."""

    def __init__(self, world: EcommerceWorld, log: InteractionLog) -> None:
        self.world = world
        cfg = world.config
        user_index = {u: i for i, u in enumerate(log.user_ids)}
        item_index = {it: i for i, it in enumerate(log.item_ids)}
        missing_users = [u for u in range(cfg.n_users) if user_id(u) not in user_index]
        missing_items = [i for i in range(cfg.n_items) if item_id(i) not in item_index]
        if missing_users or missing_items or log.n_items != cfg.n_items:
            raise InvalidInputError(
                "the log does not match its world file: "
                f"{len(missing_users)} users and {len(missing_items)} items of the world are "
                "missing from it (simulate only with the log generate wrote)"
            )
        self.user = np.array([user_index[user_id(u)] for u in range(cfg.n_users)])
        self.to_log = np.array([item_index[item_id(i)] for i in range(cfg.n_items)])
        self.to_world = np.empty(cfg.n_items, dtype=np.int64)
        self.to_world[self.to_log] = np.arange(cfg.n_items)
        self.item_vectors: Floats = world.item_vectors[self.to_world]
        """The world's true item vectors, in the log's item order."""

    def translate(self, recommend: Recommender) -> Recommender:
        def in_world(user: int, history: Sequence[int], shown: set[int]) -> int:
            item = recommend(
                int(self.user[user]),
                [int(self.to_log[i]) for i in history],
                {int(self.to_log[i]) for i in shown},
            )
            return int(self.to_world[item])

        return in_world

    def returns(self, recommend: Recommender, sessions: int, seed: int, last_n: int) -> Floats:
        return interactive_returns(
            self.world, self.translate(recommend), sessions=sessions, seed=seed, last_n=last_n
        )


def compare_saved(
    data: Path,
    paths: Sequence[Path],
    world_config: EcommerceConfig | None,
    k: int = 10,
    sessions: int = 300,
    seed: int = 0,
) -> Comparison:
    """Saved agents (``recloop train``'s agent.zip) against the baselines, on ``data``."""
    from recloop.agents.checkpoint import load_agent
    from recloop.agents.datasets import read_interactions
    from recloop.agents.trainer import TrainSpec, split

    if not paths:
        raise InvalidInputError("give at least one --agent")
    log = read_interactions(data)
    world = Recommenders(EcommerceWorld(world_config), log) if world_config else None
    comparison = Comparison(k)
    baselines_done = False
    for path in paths:
        if not path.exists():
            raise InvalidInputError(f"{path}: no such file")
        saved = load_agent(path.read_bytes())
        if saved.item_ids != list(log.item_ids) or saved.user_ids != list(log.user_ids):
            raise InvalidInputError(
                f"{path} was trained on another catalogue or user set "
                f"({saved.n_items} items, {len(saved.user_ids)} users; {data} has "
                f"{log.n_items} and {log.n_users}): evaluate it on the log it was trained on"
            )
        t = saved.meta.get("training", {})
        spec = TrainSpec(
            saved.algo,
            last_n=saved.last_n,
            valid_fraction=float(t.get("valid_fraction", 0.1)),
            test_fraction=float(t.get("test_fraction", 0.1)),
        )
        train, _, test = split(log, spec)
        if not baselines_done:
            add_baselines(comparison, train, test, world, seed, sessions, saved.last_n)
            baselines_done = True
        add_agent(comparison, saved.algo, saved, test, world, seed, sessions, saved.last_n)
    return comparison
