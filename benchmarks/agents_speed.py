"""Deep RL agents on CPU: serving latency, training throughput, memory at a 100k-item
catalogue. ``python -m benchmarks.agents_speed [--quick]``.

* Latency: a saved agent served as a recloop ``Policy`` (``AgentPolicy.scores``: context
  with user id and recent items -> scores of 100 candidate items), p50/p99 over many calls,
  at a 1,000-item and a 100,000-item catalogue (the scorer scores the whole catalogue, then
  the candidates are picked out). Yardstick in the same run: the bare exported scorer call
  on the same state, so the ratio is the Policy wrapper's overhead.
* Training throughput: logged steps per second of ``fit`` (one thread, one epoch), per
  algorithm, at both catalogue sizes, on a log shaped like real ones (see
  :func:`interactions`; ``benchmarks/agents_compare.py`` has the figures on the shop).
* The synthetic shop's log generator (1M impressions) and the trajectory builder, per second.
* Peak memory: each algorithm trains, saves, loads and serves at 100k items in a process of
  its own; its peak RSS.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import numpy as np
import torch

from benchmarks.common import cli, figure, peak_rss_mb, percentile, print_table, smoke
from recloop.agents.checkpoint import load_agent, save_agent
from recloop.agents.datasets import InteractionLog, build_trajectories
from recloop.agents.embeddings import EmbeddingConfig, pretrain_embeddings
from recloop.agents.policy import AgentPolicy
from recloop.agents.registry import make_agent
from recloop.core.types import Action
from recloop.simulators.ecommerce import EcommerceConfig, EcommerceWorld, from_ecommerce

BENCH = "agents_speed"
LAST_N = 10
CANDIDATES = 100


def interactions(n_users: int, n_items: int, events: int) -> InteractionLog:
    """A log with the shape of real ones (Zipf item popularity, sessions of ~8 events,
    a fifth of them engaged) but no world behind it: the world's (users x items) ground
    truth would dominate the memory a 100k-item probe is meant to measure."""
    rng = np.random.default_rng(0)
    ranks = np.arange(1, n_items + 1, dtype=np.float64)
    popularity = ranks**-1.1 / (ranks**-1.1).sum()
    user = rng.integers(0, n_users, events)
    return InteractionLog(
        user=user,
        item=rng.choice(n_items, events, p=popularity),
        reward=rng.choice([0.0, 1.0, 2.0, 3.0], events, p=[0.8, 0.12, 0.05, 0.03]),
        timestamp=np.arange(events, dtype=np.float64),
        session=user * 1000 + np.arange(events) // (8 * n_users),
        propensity=None,
        user_ids=tuple(f"u{u}" for u in range(n_users)),
        item_ids=tuple(f"i{i}" for i in range(n_items)),
    )


VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "reinforce-topk": ("reinforce-topk", {}),
    "reinforce-topk-sampled": ("reinforce-topk", {"sampled_softmax": 1000}),
    "ddpg": ("ddpg", {}),
    "bcq": ("bcq", {}),
    "bc": ("bc", {}),
}
"""Plain REINFORCE is left out: the same network and cost as reinforce-topk. The sampled
softmax (1,000 of the catalogue per batch) matters only for the large catalogue."""


def trained(variant: str, n_items: int, events: int) -> tuple[AgentPolicy, float]:
    """(the agent saved, loaded and wrapped as a Policy, its fit throughput in steps/s)."""
    algo, params = VARIANTS[variant]
    log = interactions(500, n_items, events)
    data = build_trajectories(log, LAST_N)
    embeddings, _ = pretrain_embeddings(data, EmbeddingConfig(epochs=1))
    agent = make_agent(algo, log.n_users, log.n_items, {"epochs": 1, **params}, embeddings)
    start = time.perf_counter()
    agent.fit(data)
    throughput = len(data) / (time.perf_counter() - start)
    blob = save_agent(agent, list(log.user_ids), list(log.item_ids), LAST_N)
    return AgentPolicy(load_agent(blob)), throughput


def latency_ms(policy: AgentPolicy, n: int) -> dict[str, list[float]]:
    """Latencies (ms) on varied requests: ``served`` is ``Policy.scores`` (ids -> scores of
    100 candidates); ``bare`` the exported candidate scorer alone on the same state and
    items (the yardstick: their ratio is the Policy's own overhead); ``catalogue`` the
    whole-catalogue scorer (what scoring every item would cost)."""
    rng = np.random.default_rng(0)
    saved = policy.saved
    items, users = saved.item_ids, saved.user_ids
    out: dict[str, list[float]] = {"served": [], "bare": [], "catalogue": []}
    for i in range(n):
        picked = rng.choice(len(items), CANDIDATES, replace=False)
        cands = [Action(items[j]) for j in picked]
        recent = [items[j] for j in rng.integers(0, len(items), 5)]
        context = {"user_id": users[i % len(users)], "recent_items": recent}
        t = time.perf_counter_ns()
        scores = policy.scores(context, cands)
        out["served"].append((time.perf_counter_ns() - t) / 1e6)
        assert scores.shape == (CANDIDATES,)
        vector, history = policy.state(context)
        index = torch.as_tensor(picked)[None, :]
        t = time.perf_counter_ns()
        saved.candidate_scores(vector, history, index)
        out["bare"].append((time.perf_counter_ns() - t) / 1e6)
        t = time.perf_counter_ns()
        saved.scores(vector, history)
        out["catalogue"].append((time.perf_counter_ns() - t) / 1e6)
    return {k: v[n // 10 :] for k, v in out.items()}  # the first tenth warms up


def memory_probe(variant: str) -> None:
    """Run in a child process: train, save, load and serve at 100k items; print peak RSS."""
    torch.set_num_threads(1)
    # VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's peak on Linux
    before_mb = peak_rss_mb()  # the imports (torch) alone
    policy, _ = trained(variant, 100_000, 5_000)
    latency_ms(policy, 50)
    peak_mb = peak_rss_mb()
    print(json.dumps({"variant": variant, "peak_rss_mb": peak_mb, "imports_mb": before_mb}))


def generator_rate(events: int) -> dict[str, Any]:
    """The synthetic shop writing a log of ``events`` impressions (20k users, 5k items) and
    the trajectories built from it."""
    cfg = EcommerceConfig(n_users=20_000, n_items=5_000, seed=0)
    start = time.perf_counter()
    log = EcommerceWorld(cfg).generate(events)
    generated = time.perf_counter() - start
    start = time.perf_counter()
    build_trajectories(from_ecommerce(log, cfg.n_users, cfg.n_items), LAST_N)
    built = time.perf_counter() - start
    return figure(
        BENCH,
        "generate_events_per_s",
        len(log) / generated,
        None,
        len(log),
        trajectories_per_s=len(log) / built,
    )


def main(quick: bool) -> list[dict[str, Any]]:
    torch.set_num_threads(1)
    rows = [generator_rate(20_000 if smoke() else 200_000 if quick else 1_000_000)]
    calls = 50 if smoke() else 500 if quick else 2000
    sizes = ((1_000, 2_000), (100_000, 1_000)) if smoke() else ((1_000, 20_000), (100_000, 5_000))
    for n_items, events in sizes:
        size = "1k" if n_items == 1_000 else "100k"
        for variant in VARIANTS:
            if n_items == 1_000 and variant == "reinforce-topk-sampled":
                continue
            policy, throughput = trained(variant, n_items, events)
            ms = latency_ms(policy, calls)
            p99 = percentile(ms["served"], 99)
            bare_p99 = percentile(ms["bare"], 99)
            n = len(ms["served"])
            name = f"{variant}_rank100"
            rows.append(
                figure(BENCH, f"{name}_p50_ms_{size}", percentile(ms["served"], 50), None, n)
            )
            rows.append(
                figure(
                    BENCH,
                    f"{name}_p99_ms_{size}",
                    p99,
                    1.0,
                    n,
                    better="lower",
                    bare_candidate_scorer_p99_ms=bare_p99,
                    ratio=p99 / bare_p99,
                    whole_catalogue_p99_ms=percentile(ms["catalogue"], 99),
                )
            )
            rows.append(
                figure(BENCH, f"{variant}_train_samples_per_s_{size}", throughput, None, events)
            )
    for variant in list(VARIANTS)[:1] if smoke() else VARIANTS:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.agents_speed", "--memory-probe", variant],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout
        probe = json.loads(out.strip().splitlines()[-1])
        rows.append(
            figure(
                BENCH,
                f"{variant}_peak_rss_mb_100k_items",
                probe["peak_rss_mb"],
                imports_mb=probe["imports_mb"],
            )
        )
    print_table("deep RL agents on CPU (one thread)", rows)
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--memory-probe":
        memory_probe(sys.argv[2])
    else:
        cli(main, "deep RL agents on CPU: latency, throughput, memory")
