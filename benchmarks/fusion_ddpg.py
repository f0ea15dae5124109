"""Score-fusion DDPG in the fusion shop: ``python -m benchmarks.fusion_ddpg [--quick]``.

Per seed, the same request stream (common random numbers: the shop draws the same users,
candidates and uniforms whatever is ranked) is answered by the baseline ranker (a = 1) and by
the agent learning online from scratch; their per-request reward difference is paired.

* the agent's gain over the baseline in the last fifth of the episode (mean per request,
  95% interval over the pooled paired differences of all seeds);
* the early phase: the worst window of 1,000 requests during the warm-up, as the agent's
  reward relative to the baseline's (the claim: never more than 3% below);
* the weight a it learned for each kind of user (the shop's best is ~0.25-0.5, not 1);
* two agents in A/B mode (shared encoder and V): each A head's distance from the shop's
  true advantage at the weights its agent serves, at each tenth of the episode, three
  ways (:data:`AB_RUNS`);
* decision latency for 100 candidates (p50/p99).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from benchmarks.common import cli, figure, mean_figure, percentile, print_table, smoke
from recloop.agents.fusion_ddpg import FusionDDPG, FusionDDPGConfig
from recloop.experiments.online_evaluation import FixedFusion
from recloop.simulators.environment import Ranker, Request, play
from recloop.simulators.fusion_shop import FusionShop, FusionShopConfig

BENCH = "fusion_ddpg"
MARGIN = 0.03


def rewards(env: FusionShop, ranker: Ranker, seed: int) -> np.ndarray:
    out: list[float] = []
    play(env, ranker, seed, lambda request, feedback: out.append(feedback.reward))
    return np.asarray(out)


AB_RUNS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # label: (shop settings, agent settings)
    "control_noise_free": ({"expected_rewards": True}, {"control_share": 0.2}),
    "no_control_noise_free": ({"expected_rewards": True}, {}),
    "control_sampled": ({}, {"control_share": 0.2}),
}
"""The A/B test three ways: with a control bucket (a fifth of users served a = 1), on
noise-free rewards (each request's expected reward): does each head converge; the same
without a control bucket: can V and the heads be told apart once the agents leave a = 1;
with the control bucket on sampled rewards: how far 60k requests get against the noise."""


def ab_convergence(n: int, label: str) -> list[dict[str, Any]]:
    """Two agents in A/B mode (shared encoder and V, an actor and an A head each): how far
    each head's advantage is from the shop's true ``E[r | a] - E[r | a = 1]``, at the
    weights that head's own agent served lately, for both kinds of user (noise-free
    states), at each tenth of the episode. A head that converges ends near the truth, or
    rather near the best its quadratic form can do there (``best_quadratic_error``)."""
    shop, settings = AB_RUNS[label]
    env = FusionShop(FusionShopConfig(requests=n, **shop))
    grid = np.linspace(0.0, 4.0, 81)
    truth = {kind: env.true_advantages(kind > 0, grid, draws=1000) for kind in (-1.0, 1.0)}
    ab = FusionDDPG(2, FusionDDPGConfig(n_agents=2, seed=0, **settings))
    errors: list[list[float]] = [[], []]
    scale: list[float] = [0.0, 0.0]
    floor: list[float] = [0.0, 0.0]

    def check(request: Request, feedback: Any) -> None:
        if ab.requests % (n // 10):
            return
        for k in (0, 1):
            served = np.array([a for _, a, _, _ in list(ab.replay[k])[-2000:]])
            err, size, best = [], [], []
            for kind, true_a in truth.items():
                with torch.no_grad():
                    h = ab.nets.encoder(torch.tensor([[kind, 1.0]])).expand(len(served), -1)
                    est = ab.nets.advantage(h, torch.as_tensor(served, dtype=torch.float32), k)
                want = np.interp(served, grid, true_a)
                err.append(np.abs(est.numpy() - want).mean())
                size.append(np.abs(want).mean())
                best.append(_best_quadratic_error(served, want))
            errors[k].append(float(np.mean(err)))
            scale[k] = float(np.mean(size))
            floor[k] = float(np.mean(best))

    play(env, ab, 0, check)
    rows = []
    for k in (0, 1):
        rows.append(
            figure(
                BENCH,
                f"ab_{label}_agent{k}_advantage_error_last",
                errors[k][-1],
                None,
                len(errors[k]),
                first=round(errors[k][0], 4),
                by_tenth=[round(e, 4) for e in errors[k]],
                true_advantage_scale=round(scale[k], 4),
                best_quadratic_error=round(floor[k], 4),
                learned_a_premium=round(ab.policy_action(_state_request(1.0), k), 3),
                learned_a_bargain=round(ab.policy_action(_state_request(-1.0), k), 3),
            )
        )
    return rows


def _best_quadratic_error(served: np.ndarray, want: np.ndarray) -> float:
    """The least error any A head can reach at these weights: its form is
    ``w (a - 1) - c (a - 1)^2``, fitted to the truth itself by least squares."""
    d = served - 1.0
    basis = np.column_stack([d, -d * d])
    coef, *_ = np.linalg.lstsq(basis, want, rcond=None)
    return float(np.abs(basis @ coef - want).mean())


def _state_request(kind: float) -> Request:
    return Request(
        user=0,
        time=0.0,
        user_features=np.array([kind, 1.0]),
        context=np.zeros(0),
        candidates=np.zeros(0, dtype=np.int64),
        item_features=np.zeros((0, 3)),
        cross_features=np.zeros((0, 0)),
    )


def main(quick: bool) -> list[dict[str, Any]]:
    torch.set_num_threads(1)
    n = 4_000 if smoke() else 20_000 if quick else 50_000
    env = FusionShop(FusionShopConfig(requests=n))
    seeds = [0, 1, 2]
    gains, worst, learned = [], [], {-1.0: [], 1.0: []}
    for seed in seeds:
        base = rewards(env, FixedFusion(1.0), seed)
        agent = FusionDDPG(2, FusionDDPGConfig(seed=seed))
        got = rewards(env, agent, seed)
        gains.append((got - base)[-n // 5 :])
        warm = agent.cfg.warmup_requests
        windows = [
            got[i : i + 1000].mean() / base[i : i + 1000].mean() for i in range(0, warm, 1000)
        ]
        worst.append(min(windows))
        with torch.no_grad():
            for kind in learned:
                h = agent.nets.encoder(torch.tensor([[kind, 1.0]]))
                learned[kind].append(float(agent.nets.action(h, 0)[0]))
    rows = [
        mean_figure(
            BENCH, "late_gain_per_request", np.concatenate(gains).tolist(), seeds=len(seeds)
        ),
        figure(
            BENCH,
            "early_worst_window_vs_baseline",
            min(worst),
            1.0 - MARGIN,
            len(seeds),
            better="higher",
            per_seed=[round(w, 4) for w in worst],
        ),
    ]
    for kind, values in learned.items():
        name = "premium" if kind > 0 else "bargain"
        rows.append(
            figure(
                BENCH,
                f"learned_a_{name}",
                float(np.mean(values)),
                None,
                len(values),
                per_seed=[round(v, 3) for v in values],
            )
        )
    for label in AB_RUNS:
        rows += ab_convergence(2_000 if smoke() else 6_000 if quick else 60_000, label)
    big = FusionShop(FusionShopConfig(requests=400 if smoke() else 2000, candidates=100))
    agent = FusionDDPG(2, FusionDDPGConfig())
    request: Request | None = big.reset(0)
    times = []
    while request is not None:
        start = time.perf_counter_ns()
        order = agent.rank(request)
        times.append((time.perf_counter_ns() - start) / 1e6)
        feedback, request = big.step(order)
        agent.observe(feedback)
    times = times[200:]
    rows.append(figure(BENCH, "rank100_p50_ms", percentile(times, 50), None, len(times)))
    rows.append(
        figure(BENCH, "rank100_p99_ms", percentile(times, 99), 1.0, len(times), better="lower")
    )
    print_table("score-fusion DDPG in the fusion shop", rows)
    return rows


if __name__ == "__main__":
    cli(main, "score-fusion DDPG against the a = 1 baseline")
