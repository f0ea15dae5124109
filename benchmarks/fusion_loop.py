"""The score-fusion DDPG served and learned through the loop (``learner = "fusion"``).

``python -m benchmarks.fusion_loop [--quick | --smoke]``. In the weight shop
(``recloop.simulators.weight_shop``: the best fusion weight is 0.3 for one kind of user and
3 for the other), a fusion loop learns from scratch over ``DECISIONS`` decisions per seed
(``Loop.rank``, rewards, the pipeline stepped every 50 decisions, with the loop's
defaults); then its served version is scored greedily on 2,000 fresh requests. In the same
run: the baseline ``a = 1``, the best single weight for everyone (the strongest simple
baseline) and the oracle. Also ``Loop.rank``'s latency with the served version, 10
candidates, logging included (p50 / p99 ms), and the learning run's decisions per second.
Seeds 0, 1, 2 (``--quick``: 0 and 1; ``--smoke``: seed 0, 1,500 decisions).
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

import numpy as np
import torch

from benchmarks.common import cli, figure, mean_figure, print_table, smoke
from recloop import Loop
from recloop.agents.fusion_loop import FusionPolicy
from recloop.core.clock import FakeClock
from recloop.simulators.weight_shop import (
    FixedWeight,
    WeightShop,
    best_single_weight,
    greedy_value,
    oracle_value,
)

BENCH = "fusion_loop"
DECISIONS = 7000
LATENCY_REQUESTS = 3000


def learn(seed: int, decisions: int) -> tuple[float, float, float, float, list[float]]:
    """(greedy value, bargain weight, hurry weight, decisions/s, rank latencies in s)."""
    clock, shop = FakeClock(), WeightShop(seed)
    with (
        tempfile.TemporaryDirectory() as data,
        Loop.open(
            data, start=False, clock=clock, exp_unit_seconds=1.0, seed=seed, learner="fusion"
        ) as lp,
    ):
        start = time.perf_counter()
        for i in range(decisions):
            ctx, acts = shop.context(), shop.actions()
            d = lp.rank(ctx, acts, event_id=f"e-{i}")
            lp.reward(d.event_id, shop.value(ctx, next(a for a in acts if a.id == d.chosen)))
            clock.advance(0.01)
            if i % 50 == 0:
                lp.step()
        rate = decisions / (time.perf_counter() - start)
        policy = lp.served.slot.current.policy
        assert isinstance(policy, FusionPolicy), "no fusion version was served"
        weights = [
            float(
                np.mean([policy.mean_weight({"user_id": f"u{u}", "hurry": h}) for u in range(50)])
            )
            for h in (0.0, 1.0)
        ]
        probe, latencies = WeightShop(100 + seed), []
        for i in range(LATENCY_REQUESTS // (10 if smoke() else 1)):
            ctx, acts = probe.context(), probe.actions()
            t0 = time.perf_counter()
            lp.rank(ctx, acts, event_id=f"latency-{i}")
            latencies.append(time.perf_counter() - t0)
        return greedy_value(policy), weights[0], weights[1], rate, latencies


def main(quick: bool) -> list[dict[str, Any]]:
    torch.set_num_threads(1)  # serving's setting (README): tiny networks gain nothing from more
    seeds = [0] if smoke() else [0, 1] if quick else [0, 1, 2]
    decisions = 1500 if smoke() else DECISIONS
    runs = [learn(seed, decisions) for seed in seeds]
    best, best_a = best_single_weight(np.arange(0.0, 4.01, 0.25).tolist())
    latencies = np.concatenate([r[4] for r in runs]) * 1e3
    rows = [
        mean_figure(BENCH, "learned_greedy_value", [r[0] for r in runs], decisions=decisions),
        figure(BENCH, "baseline_a1_value", greedy_value(FixedWeight(1.0))),
        figure(BENCH, "best_single_weight_value", best, weight=best_a),
        figure(BENCH, "oracle_value", oracle_value()),
        mean_figure(BENCH, "learned_weight_bargain", [r[1] for r in runs], best=0.3),
        mean_figure(BENCH, "learned_weight_hurry", [r[2] for r in runs], best=3.0),
        figure(BENCH, "learning_decisions_per_s", float(np.mean([r[3] for r in runs]))),
        figure(BENCH, "rank10_p50_ms", float(np.percentile(latencies, 50)), n=len(latencies)),
        figure(BENCH, "rank10_p99_ms", float(np.percentile(latencies, 99)), n=len(latencies)),
    ]
    print_table("The score-fusion DDPG as a loop's learner, against single weights", rows)
    return rows


if __name__ == "__main__":
    cli(main, __doc__ or BENCH)
