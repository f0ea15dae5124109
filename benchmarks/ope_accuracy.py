"""How right are the off-policy estimates? Synthetic logs with known truth, and real logs.

1. Synthetic: a logging policy differs from the evaluation policy at three overlap levels
   (high: the logger resembles the evaluation policy; medium: uniform logging; low: the
   logger prefers the actions the evaluation policy avoids). For
   each level and seed, a fresh log; every estimator (reward model: ridge with context x
   action features, 3-fold cross-fitted) is compared with the policy's true value. Printed:
   mean relative error and 95%-interval coverage over the seeds.
2. Real: the Open Bandit Dataset sample that ``obp`` ships. The Bernoulli TS policy is
   evaluated from the uniform-random log and compared with its own on-policy average reward
   (from the log it produced). Skipped with a message when ``obp``'s data is not installed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from benchmarks.common import cli, figure, print_table
from recloop.evaluation.estimators import evaluate, make_estimator
from recloop.evaluation.reward_model import cross_fit_rewards
from recloop.evaluation.synthetic import Evaluation, SyntheticBandit

BENCH = "ope_accuracy"
LEVELS = {  # overlap: (logging inverse temperature, uniform mix); the evaluation policy is
    # a softmax (beta 5) over a noisy view of the true rewards
    "high": (5.0, 0.1),  # the logger resembles the evaluation policy
    "medium": (0.0, 0.1),  # uniform logging
    "low": (-5.0, 0.1),  # the logger prefers the actions the evaluation policy avoids
}
NAMES = ["dm", "ips", "snips", "dr", "sndr", "switch-dr", "dr-os", "clipped-ips", "clipped-dr"]


def synthetic(quick: bool) -> list[dict[str, Any]]:
    seeds = 5 if quick else 30
    n = 1_000 if quick else 5_000
    policy = Evaluation(beta=5.0)
    rows: list[dict[str, Any]] = []
    table: list[str] = []
    for level, (beta, eps) in LEVELS.items():
        world = SyntheticBandit(seed=11, n_actions=10, dim=5, logging_beta=beta,
                                logging_epsilon=eps)  # fmt: skip
        truth = world.true_value(policy, n=200_000 if quick else 1_000_000)
        errors: dict[str, list[float]] = {}
        covered: dict[str, int] = {}
        ess: list[float] = []
        for seed in range(seeds):
            data, q_true = world.log(n, stream=seed)
            dist = policy.probabilities(data.context, q_true)
            q = cross_fit_rewards(data, model="ridge", n_folds=3, seed=seed)
            ests = [make_estimator(name, clip=20.0) for name in NAMES]
            results, overlap = evaluate(data, dist, ests, q)
            ess.append(overlap.ess_ratio)
            for name, res in zip(NAMES, results, strict=True):
                iv = res.interval
                errors.setdefault(name, []).append(abs(iv.value - truth) / truth)
                covered[name] = covered.get(name, 0) + int(iv.low <= truth <= iv.high)
        mean_ess = float(np.mean(ess))
        for name in NAMES:
            rel = float(np.mean(errors[name]))
            cov = covered[name] / seeds
            rows.append(figure(BENCH, f"{level}_{name}_rel_error", rel, None, seeds,
                               coverage=cov, rows=n, ess_ratio=mean_ess, truth=truth))  # fmt: skip
            table.append(f"| {level} (ESS {mean_ess:.0%}) | {name} | {rel:.1%} | {cov:.0%} |")
    print(f"\nsynthetic logs: {seeds} seeds x {n} rows per overlap level")
    print("| overlap | estimator | mean relative error | 95% interval coverage |")
    print("|---|---|---|---|")
    print("\n".join(table))
    return rows


def open_bandit() -> list[dict[str, Any]]:
    from recloop.evaluation.obd import bts_action_dist, load_obd, obd_available, on_policy_value

    if not obd_available():
        print("Open Bandit Dataset not installed (pip install --no-deps obp==0.5.7): skipped")
        return []
    log = load_obd("random", "all")
    data = log.bandit_data()
    dist = bts_action_dist("all", n_rounds=log.n_rounds)
    truth = on_policy_value("bts", "all")
    q = cross_fit_rewards(data, model="hgb", n_folds=3, seed=0)
    names = ["dm", "ips", "snips", "dr", "sndr", "switch-dr", "dr-os"]
    results, overlap = evaluate(data, dist, [make_estimator(n) for n in names], q)
    rows: list[dict[str, Any]] = []
    print(f"\nOpen Bandit Dataset (random -> Bernoulli TS, campaign all, {data.n_rows} rows): "
          f"on-policy value of BTS {truth:.5f}; ESS {overlap.ess_ratio:.0%}")  # fmt: skip
    print("| estimator | estimate | 95% interval | relative error | covers on-policy |")
    print("|---|---|---|---|---|")
    for res in results:
        iv = res.interval
        rel = abs(iv.value - truth) / truth
        inside = iv.low <= truth <= iv.high
        print(f"| {res.name} | {iv.value:.5f} | [{iv.low:.5f}, {iv.high:.5f}] | {rel:.1%} | "
              f"{'yes' if inside else 'no'} |")  # fmt: skip
        rows.append(figure(BENCH, f"obd_{res.name.split('(')[0]}_rel_error", rel, None,
                           data.n_rows, estimate=iv.value, low=iv.low, high=iv.high,
                           on_policy=truth, covered=inside))  # fmt: skip
    return rows


def main(quick: bool) -> list[dict[str, Any]]:
    rows = synthetic(quick) + open_bandit()
    print_table("off-policy estimate accuracy", rows)
    if any(not math.isfinite(r["value"]) for r in rows):
        raise SystemExit("an estimate was not finite")
    return rows


if __name__ == "__main__":
    cli(main, "off-policy estimate accuracy: synthetic truth and the Open Bandit Dataset")
