"""DRN and its ablations in the returning-users simulator, learning online from scratch:
``python -m benchmarks.drn_ablation [--quick]``.

Each run is one episode (60 days, 300 users; quick: 40 days, 200 users) in a shop where
clickbait is a little more clickable and disappointed users come back later
(``clickbait_weight`` 0.3, ``return_sensitivity`` 3). Judged on the episode's second half,
when every learner has had the first half to learn: the long-term return per user (clicks +
returns), pooled over seeds with a 95% interval, and the clicks and visits behind it; and
DRN's paired gain over each ablation (the same seeds, so the same users), with intervals
over users and over seeds. 20 seeds (quick: 3), the episodes run on every core.

Variants: ``drn`` (beta 2: the activeness term weighted for this simulator's scale, DBGD
minor updates, major updates from replay), ``drn_paper_beta`` (beta 0.05, the paper's),
``no_activeness`` (beta 0), ``no_dbgd`` (greedy, major updates only), and ``random``.
Also DRN's decision latency for 100 candidates (with and without the DBGD perturbation,
``Loop.rank`` serving a DRN version with logging, with the pipeline stepped in the serving
thread and, as ``recloop serve`` runs it, in a process of its own), and the simulator's own speed
(requests/s under a random ranker).
"""

from __future__ import annotations

import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from benchmarks.common import (
    cli,
    figure,
    mean_figure,
    percentile,
    print_table,
    smoke,
    synthetic_requests,
)
from recloop import Loop
from recloop.agents.drn import DRN, DRNConfig
from recloop.core.clock import FakeClock
from recloop.evaluation.ranking import mean_interval
from recloop.serving.pipeline_process import start_pipeline_process, stop_pipeline_process
from recloop.settings import DEFAULT_LOOP, LoopSettings
from recloop.simulators.environment import Feedback, RandomRanker, Ranker, Request, play
from recloop.simulators.returning_users import DAY, ReturningUsers, ReturningUsersConfig

BENCH = "drn_ablation"
VARIANTS: dict[str, dict[str, Any] | None] = {
    "drn": {"beta": 2.0},
    "drn_paper_beta": {"beta": 0.05},
    "no_activeness": {"beta": 0.0},
    "no_dbgd": {"beta": 2.0, "minor_updates": False},
    "random": None,
}


class SecondHalf:
    """Passes requests through, and copies the per-user totals when the second half starts."""

    def __init__(self, inner: Ranker, env: ReturningUsers, half: float) -> None:
        self.inner, self.env, self.half = inner, env, half
        self.at_half: dict[str, np.ndarray] | None = None

    def rank(self, request: Request) -> list[int]:
        if self.at_half is None and request.time > self.half:
            self.at_half = {k: v.copy() for k, v in self.env.per_user.items()}
        return self.inner.rank(request)

    def observe(self, feedback: Feedback) -> None:
        self.inner.observe(feedback)


def episode(variant: str, seed: int, cfg: ReturningUsersConfig) -> dict[str, np.ndarray]:
    env = ReturningUsers(cfg)
    probe = env.reset(seed)
    params = VARIANTS[variant]
    ranker: Ranker
    if params is None:
        ranker = RandomRanker(seed)
    else:
        state_dim = len(probe.user_features) + len(probe.context)
        pair_dim = probe.cross_features.shape[1] + probe.item_features.shape[1]
        ranker = DRN(state_dim, pair_dim, env.slate_size, DRNConfig(seed=seed, **params))
    watch = SecondHalf(ranker, env, cfg.horizon_days * DAY / 2)
    play(env, watch, seed)
    assert watch.at_half is not None
    return {k: env.per_user[k] - watch.at_half[k] for k in env.per_user}


def decision_latency(n: int) -> list[dict[str, Any]]:
    """DRN.rank on requests with 100 candidates, with and without the DBGD perturbation
    (the network is trained a little first, so the timings are of a realistic one)."""
    cfg = ReturningUsersConfig(n_users=200, candidates=100, horizon_days=20)
    rows = []
    for name, minor in (("drn", True), ("no_dbgd", False)):
        env = ReturningUsers(cfg)
        request: Request | None = env.reset(0)
        assert request is not None
        state_dim = len(request.user_features) + len(request.context)
        pair_dim = request.cross_features.shape[1] + request.item_features.shape[1]
        agent = DRN(state_dim, pair_dim, env.slate_size, DRNConfig(minor_updates=minor))
        times = []
        while request is not None and len(times) < n:
            start = time.perf_counter_ns()
            ranking = agent.rank(request)
            times.append((time.perf_counter_ns() - start) / 1e6)
            feedback, request = env.step(ranking)
            agent.observe(feedback)
        times = times[len(times) // 10 :]
        rows.append(
            figure(BENCH, f"{name}_rank100_p50_ms", percentile(times, 50), None, len(times))
        )
        rows.append(
            figure(
                BENCH,
                f"{name}_rank100_p99_ms",
                percentile(times, 99),
                1.0,
                len(times),
                better="lower",
            )
        )
    return rows


def loop_latency(n: int, by_id: bool = False) -> list[dict[str, Any]]:
    """``Loop.rank`` serving a DRN version (``learner = "drn"``): 100 candidates x 10
    features hashed, scored, explored and logged durably, as a request to the loop costs.
    ``by_id``: the candidates are catalogue items (their 10 numbers as raw fields, put
    first) named by id, as a catalogue-backed application sends them."""
    clock = FakeClock()
    requests = synthetic_requests(n + 300, seed=1, n_actions=100)
    with tempfile.TemporaryDirectory(prefix="recloop-bench-drn-") as tmp:
        settings = {"exp_unit_seconds": 1.0, "learner": "drn", "drn": {"major_every": 100}}
        with Loop.open(tmp, start=False, clock=clock, **settings) as lp:
            if by_id:
                items = {a["id"]: a["features"] for _, actions in requests for a in actions}
                lp.put_items(list(items.items()))
            times = []
            for i, (context, actions) in enumerate(requests):
                sent = [a["id"] for a in actions] if by_id else actions
                start = time.perf_counter_ns()
                d = lp.rank(context, sent)
                times.append((time.perf_counter_ns() - start) / 1e6)
                if i % 3 == 0:
                    lp.reward(d.event_id, 1.0)
                clock.advance(0.01)
                if i % 100 == 0:
                    lp.step()
            version = lp.model_version
    assert version != "default", "the loop never served a DRN version"
    times = times[300:]  # after the first DRN versions are served
    name = "loop_drn_rank100_by_id" if by_id else "loop_drn_rank100"
    return [
        figure(BENCH, f"{name}_p50_ms", percentile(times, 50), None, len(times)),
        figure(BENCH, f"{name}_p99_ms", percentile(times, 99), 1.0, len(times), better="lower"),
    ]


def served_latency(n: int, by_id: bool = False, rate: float = 400.0) -> list[dict[str, Any]]:
    """``Loop.rank`` serving DRN versions as ``recloop serve`` runs it: the pipeline (join,
    DRN minor and major updates, checkpoints) in its own process, this process serving
    only (its tick thread picking up each new version), on the real clock, requests paced
    at ``rate``/s (a major update every 200 requests: one every half second).
    :func:`loop_latency` steps the pipeline in the serving thread itself,
    the worst case: each step's training leaves the next request with cold CPU caches."""
    settings = LoopSettings(exp_unit_seconds=1.0, learner="drn")  # DRN's defaults
    requests = synthetic_requests(n + 300, seed=1, n_actions=100)
    times: list[float] = []
    versions: set[str] = set()
    # recloop serve's serving processes run PyTorch on one thread (serving/threads.py: set
    # through the environment before PyTorch loads; here it is loaded, and this thread is
    # the one that serves); the pipeline process gets all cores but one, as there
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="recloop-bench-drn-served-") as tmp:
        lp = Loop(settings, Path(tmp), DEFAULT_LOOP, role="serve")
        child = start_pipeline_process(Path(tmp), {DEFAULT_LOOP: settings})
        try:
            lp.start()
            if by_id:
                items = {a["id"]: a["features"] for _, actions in requests for a in actions}
                lp.put_items(list(items.items()))
            deadline = time.monotonic() + 60.0
            i = 0
            next_at = time.perf_counter()
            while len(times) < n:
                if time.monotonic() > deadline:
                    raise RuntimeError("the pipeline process never deployed a DRN version")
                context, actions = requests[i % len(requests)]
                sent = [a["id"] for a in actions] if by_id else actions
                next_at += 1.0 / rate
                time.sleep(max(0.0, next_at - time.perf_counter()))
                start = time.perf_counter_ns()
                d = lp.rank(context, sent)
                elapsed = (time.perf_counter_ns() - start) / 1e6
                if d.model_version != "default":  # measured once DRN versions are served
                    times.append(elapsed)
                    versions.add(d.model_version)
                if i % 3 == 0:
                    lp.reward(d.event_id, 1.0)
                i += 1
        finally:
            stop_pipeline_process(child)
            lp.close()
            torch.set_num_threads(threads)
    name = "served_drn_rank100_by_id" if by_id else "served_drn_rank100"
    return [
        figure(BENCH, f"{name}_p50_ms", percentile(times, 50), None, len(times)),
        figure(
            BENCH,
            f"{name}_p99_ms",
            percentile(times, 99),
            1.0,
            len(times),
            better="lower",
            versions_served=len(versions),
        ),
    ]


ABLATIONS = ("no_dbgd", "no_activeness")
"""What DRN is compared with, pair by pair: the same seeds, so the same users."""


def _episode_returns(job: tuple[str, int, ReturningUsersConfig]) -> dict[str, np.ndarray]:
    torch.set_num_threads(1)
    return episode(*job)


def main(quick: bool) -> list[dict[str, Any]]:
    torch.set_num_threads(1)
    seeds = list(range(2 if smoke() else 3 if quick else 20))
    cfg = ReturningUsersConfig(
        n_users=40 if smoke() else 200 if quick else 300,
        horizon_days=10 if smoke() else 40 if quick else 60,
        clickbait_weight=0.3,
        return_sensitivity=3.0,
    )
    jobs = [(variant, seed, cfg) for variant in VARIANTS for seed in seeds]
    # episodes are independent: one process per core (spawned: no forked torch state)
    with ProcessPoolExecutor(os.cpu_count() or 1, mp_context=get_context("spawn")) as pool:
        done = dict(zip(jobs, pool.map(_episode_returns, jobs), strict=True))
    rows = []
    returns: dict[str, list[np.ndarray]] = {}
    for variant in VARIANTS:
        got = [done[(variant, seed, cfg)] for seed in seeds]
        returns[variant] = [g["clicks"] + g["returns"] for g in got]
        rows.append(
            mean_figure(
                BENCH,
                f"{variant}_long_term_return_per_user",
                np.concatenate(returns[variant]).tolist(),
                clicks_per_user=float(np.concatenate([g["clicks"] for g in got]).mean()),
                visits_per_user=float(np.concatenate([g["visits"] for g in got]).mean()),
                seeds=len(seeds),
            )
        )
    for ablation in ABLATIONS:
        rows.append(_paired_gain(returns["drn"], returns[ablation], f"drn_gain_over_{ablation}"))
    rows += decision_latency(300 if quick else 2000)
    rows += loop_latency(300 if quick else 2000)
    rows += loop_latency(300 if quick else 2000, by_id=True)
    rows += served_latency(600 if quick else 2000)
    rows += served_latency(600 if quick else 2000, by_id=True)
    env = ReturningUsers(cfg)
    start = time.perf_counter()
    answered, _ = play(env, RandomRanker(0), 0)
    rows.append(figure(BENCH, "simulator_requests_per_s", answered / (time.perf_counter() - start)))
    print_table("DRN ablations, returning-users simulator (second half of each episode)", rows)
    return rows


def _paired_gain(drn: list[np.ndarray], other: list[np.ndarray], name: str) -> dict[str, Any]:
    """DRN's long-term return per user minus the ablation's, seed by seed (the same users):
    a 95% interval over all users pooled, and a stricter one over the seeds' means (users of
    one episode share its learner, so they are not fully independent)."""
    per_user = np.concatenate([a - b for a, b in zip(drn, other, strict=True)])
    iv = mean_interval(per_user)
    by_seed = np.array([(a - b).mean() for a, b in zip(drn, other, strict=True)])
    half = float(stats.t.ppf(0.975, len(by_seed) - 1) * by_seed.std(ddof=1)) / len(by_seed) ** 0.5
    return figure(
        BENCH,
        name,
        iv.value,
        None,
        len(per_user),
        low=iv.low,
        high=iv.high,
        seed_low=float(by_seed.mean()) - half,
        seed_high=float(by_seed.mean()) + half,
        separated=bool(iv.low > 0 and float(by_seed.mean()) - half > 0),
        seeds_won=int((by_seed > 0).sum()),
        seeds=len(by_seed),
    )


if __name__ == "__main__":
    cli(main, "DRN and its ablations in the returning-users simulator")
