"""Every deep RL algorithm against random and popularity, over seeds, offline and
interactively: ``python -m benchmarks.agents_compare [--quick]``.

Per seed: a synthetic shop (300 users, 150 items, ~40k logged impressions from its
popularity-biased logger), split by time (the latest 20% is the test set), MF/BPR embeddings
pre-trained on the training split, then each algorithm with its default hyperparameters.
Judged by next-item NDCG@10 on the test split and by the cumulative reward of simulated
10-step sessions against the ground-truth user model; rows of all seeds are pooled into one
95% interval. Also prints each algorithm's training throughput (logged steps per second of
``fit``, one thread).
"""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.common import cli, figure, print_table, smoke
from recloop.agents.registry import AGENTS
from recloop.agents.trainer import TrainSpec, split, train_agent
from recloop.experiments.comparison import Comparison, Recommenders, add_agent, add_baselines
from recloop.simulators.ecommerce import EcommerceConfig, EcommerceWorld, from_ecommerce

BENCH = "agents_compare"
LAST_N = 5


def main(quick: bool) -> list[dict[str, Any]]:
    torch.set_num_threads(1)
    seeds = [0, 1] if smoke() else [0, 1, 2]
    sessions = 20 if smoke() else 200 if quick else 300
    comparison = Comparison(k=10)
    throughput: dict[str, list[float]] = {}
    for seed in seeds:
        cfg = EcommerceConfig(n_users=300, n_items=150, seed=seed)
        world = EcommerceWorld(cfg)
        log = from_ecommerce(world.generate(5_000 if smoke() else 40_000), cfg.n_users, cfg.n_items)
        sim = Recommenders(world, log)
        base = TrainSpec("bc", seed=seed, last_n=LAST_N, valid_fraction=0.0, test_fraction=0.2)
        train, _, test = split(log, base)
        add_baselines(comparison, train, test, sim, seed, sessions, LAST_N)
        for algo in AGENTS:
            run = train_agent(log, TrainSpec(algo, {}, seed, LAST_N, 0.0, 0.2))
            add_agent(comparison, algo, run.agent, test, sim, seed, sessions, LAST_N)
            throughput.setdefault(algo, []).append(run.samples_per_second)
            print(f"seed {seed} {algo}: test NDCG@10 {run.test.ndcg.value:.3f}", flush=True)
    rows = []
    table = comparison.rows()
    best_baseline = {
        metric: max(r[metric]["high"] for r in table if r["name"] in ("random", "popularity"))
        for metric in ("ndcg@10", "session_reward")
    }
    for r in table:
        for metric in ("ndcg@10", "session_reward"):
            f = r[metric]
            extra: dict[str, Any] = {"low": f["low"], "high": f["high"], "seeds": r["seeds"]}
            if r["name"] not in ("random", "popularity"):
                # the claim: the agent's interval lies wholly above both baselines' intervals
                extra["separated_from_baselines"] = bool(f["low"] > best_baseline[metric])
            rows.append(figure(BENCH, f"{r['name']}_{metric}", f["value"], None, f["n"], **extra))
    for algo, values in throughput.items():
        rows.append(
            figure(BENCH, f"{algo}_train_samples_per_s", sum(values) / len(values), None, 3)
        )
    print_table("deep RL agents vs baselines, 3 seeds pooled (95% intervals)", rows)
    return rows


if __name__ == "__main__":
    cli(main, "deep RL agents against random and popularity, 3 seeds")
