"""Off-policy estimators on 1M logged rows: time and memory.

Goal: every estimator (point estimate and normal interval), reward models aside, in under
5 s in all on 1M rows x 10 actions. The reward model's ``q`` here is the true expected reward
plus noise (so the timing is the estimators'); a cross-fitted model's time is a separate
figure, on a slice. Bootstrap intervals are timed separately too (they resample rows).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import cli, figure, peak_rss_mb, print_table, rss_mb
from recloop.evaluation.estimators import ESTIMATOR_NAMES, make_estimator
from recloop.evaluation.logdata import BanditData, read_log, write_log
from recloop.evaluation.offpolicy import prepare
from recloop.evaluation.reward_model import cross_fit_rewards
from recloop.evaluation.synthetic import Evaluation, SyntheticBandit
from recloop.evaluation.terms import bootstrap_interval

BENCH = "ope_speed"
GOAL_S = 5.0


def main(quick: bool) -> list[dict[str, Any]]:
    n = 100_000 if quick else 1_000_000
    world = SyntheticBandit(seed=0, n_actions=10, dim=5, logging_beta=1.0)
    data, q_true = world.log(n)
    dist = Evaluation(beta=3.0).probabilities(data.context, q_true)
    q = np.clip(q_true + np.random.default_rng(1).normal(scale=0.05, size=q_true.shape), 0, 1)
    rss_before = rss_mb()
    rows: list[dict[str, Any]] = []

    t0 = time.perf_counter()
    p = prepare(data, dist, q)
    prep_s = time.perf_counter() - t0
    per: dict[str, float] = {}
    for name in ESTIMATOR_NAMES:
        est = make_estimator(name, clip=10.0)
        t1 = time.perf_counter()
        est.interval_of(p)
        per[name] = time.perf_counter() - t1
    total = prep_s + sum(per.values())
    rows.append(
        figure(
            BENCH,
            "all_estimators_s",
            total,
            GOAL_S,
            n,
            better="lower",
            actions=10,
            estimators=len(per),
            prepare_s=prep_s,
        )
    )
    for name, seconds in per.items():
        rows.append(figure(BENCH, f"{name}_s", seconds, None, n))
    rows.append(
        figure(BENCH, "peak_rss_mb", peak_rss_mb(), None, n, rss_before_estimators=rss_before)
    )

    t2 = time.perf_counter()
    boot_n = 50 if quick else 100
    bootstrap_interval(make_estimator("snips").terms(p), p.n, n_bootstrap=boot_n)
    boot_s = time.perf_counter() - t2
    rows.append(figure(BENCH, "snips_bootstrap_s", boot_s, None, n, resamples=boot_n))

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.parquet"
        write_log(path, data)
        t4 = time.perf_counter()
        read_log(path)
        rows.append(figure(BENCH, "read_parquet_log_s", time.perf_counter() - t4, None, n))

    sub = 20_000 if quick else 100_000

    small = BanditData(
        action=data.action[:sub],
        reward=data.reward[:sub],
        pscore=data.pscore[:sub],
        n_actions=data.n_actions,
        context=data.context[:sub] if data.context is not None else None,
    )
    for model in ("ridge", "hgb"):
        t3 = time.perf_counter()
        cross_fit_rewards(small, model=model, n_folds=3)
        rows.append(
            figure(BENCH, f"reward_model_{model}_3fold_s", time.perf_counter() - t3, None, sub)
        )
    print_table("off-policy estimators on logged rows", rows)
    return rows


if __name__ == "__main__":
    cli(main, "off-policy estimators on 1M rows: time and memory")
