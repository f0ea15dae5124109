"""Joined examples learned per second by ``VWLearner`` on one core.

Yardsticks in the same run: raw ``Workspace.learn`` on pre-built text (and with naive text
building). Also the learner stage of the pipeline as a loop runs it (read from the SQLite
joined store, decode, learn, checkpoint every ``checkpoint_every_examples``).
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable
from typing import Any

import vowpalwabbit

from benchmarks.common import (
    cli,
    direct_vw,
    figure,
    naive_lines,
    print_table,
    synthetic_requests,
)
from benchmarks.common import synthetic_reward as reward_of
from recloop import Loop
from recloop.core.clock import FakeClock
from recloop.core.types import Action, Decision, JoinedExample
from recloop.features.vw_text import labelled_adf_example
from recloop.policies.vw import VWLearner
from recloop.settings import LoopSettings

BENCH = "learner_throughput"
GOAL_PER_S = 10_000.0
EPSILON = 0.2


def make_examples(n: int, seed: int = 2) -> list[JoinedExample]:
    """Joined examples as the joiner makes them: epsilon-greedy logged, 10x10 features."""
    requests = synthetic_requests(512, seed=seed)
    rng = random.Random(seed)
    start = time.time() - 3600.0
    out = []
    for i in range(n):
        context, raw_actions = requests[i % len(requests)]
        actions = tuple(Action(a["id"], a["features"]) for a in raw_actions)
        k = len(actions)
        chosen = rng.randrange(k)
        probs = [EPSILON / k + (1.0 - EPSILON if j == 0 else 0.0) for j in range(k)]
        order = [chosen, *(j for j in range(k) if j != chosen)]
        value = reward_of(context, raw_actions[chosen]["features"])
        decision = Decision(
            event_id=f"ev{i}",
            loop="default",
            timestamp=start + i * 1e-3,
            context=context,
            actions=actions,
            ranking=tuple(actions[j].id for j in order),
            probabilities=tuple(probs[j] for j in order),
            chosen=actions[chosen].id,
            chosen_index=chosen,
            probability=probs[chosen],
            model_version="1",
            policy="vw-cb",
        )
        out.append(JoinedExample(decision, value, int(value > 0), value == 0, start + i * 1e-3))
    return out


def _rate(n: int, run: Callable[[], None]) -> tuple[float, float]:
    """(examples per wall second, examples per CPU second) of ``run``."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    run()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return n / wall, n / max(cpu, 1e-9)


def _pipeline_rate(
    examples: list[JoinedExample], tmp: str, name: str, **settings: Any
) -> tuple[float, float, int]:
    """Learner stage of a loop's pipeline over ``examples`` already in the joined store."""
    clock = FakeClock(time.time())
    loop = Loop.open(tmp, name=name, start=False, clock=clock, **settings)
    try:
        for i in range(0, len(examples), 2000):
            loop.joined.commit_joined(examples[i : i + 2000], {}, [])
        before = loop.stats.get("checkpoints_total")
        wall, cpu = _rate(len(examples), lambda: loop.pipeline.learn_step(clock.now()))
        checkpoints = int(loop.stats.get("checkpoints_total") - before)
        if loop.pipeline.learner_offset != len(examples):
            raise RuntimeError("the pipeline did not learn every example")
    finally:
        loop.close()
    return wall, cpu, checkpoints


def main(quick: bool = False) -> list[dict[str, Any]]:
    n = 5000 if quick else 20000
    n_pipe = 2000 if quick else 10000
    examples = make_examples(n)
    args = LoopSettings().full_vw_args()
    rows: list[dict[str, Any]] = []

    # warm up imports/allocators once, untimed
    warm = VWLearner(args)
    for ex in examples[:300]:
        warm.learn_one(ex)
    warm.close()

    learner = VWLearner(args)
    try:
        lib_rate, lib_cpu_rate = _rate(n, lambda: [learner.learn_one(ex) for ex in examples])
    finally:
        learner.close()

    def labelled(ex: JoinedExample) -> list[str]:
        d = ex.decision
        return labelled_adf_example(d.context, d.actions, d.chosen_index, -ex.reward, d.probability)

    prebuilt = [labelled(ex) for ex in examples]
    raw = vowpalwabbit.Workspace(f"{args} --quiet")
    try:
        raw_rate, _ = _rate(n, lambda: [raw.learn(lines) for lines in prebuilt])
    finally:
        raw.finish()

    def naive(ex: JoinedExample) -> list[str]:
        d = ex.decision
        actions = [{"id": a.id, "features": a.features} for a in d.actions]
        lines = naive_lines(dict(d.context), actions)
        k = d.chosen_index + 1
        lines[k] = f"0:{-ex.reward}:{d.probability} {lines[k]}"
        return lines

    raw = vowpalwabbit.Workspace(f"{args} --quiet")
    try:
        naive_rate, _ = _rate(n, lambda: [raw.learn(naive(ex)) for ex in examples])
    finally:
        raw.finish()

    # floor: the same learning through pylibvw, without pyvw's per-line Example wrappers
    raw = vowpalwabbit.Workspace(f"{args} --quiet")
    direct_rate = None
    try:
        direct = direct_vw(raw)
        if direct is not None:
            texts = ["\n".join(lines) for lines in prebuilt]
            direct_rate, _ = _rate(n, lambda: [direct[1](t) for t in texts])
    finally:
        raw.finish()

    with tempfile.TemporaryDirectory(prefix="recloop-bench-learn-") as tmp:
        pipe = examples[:n_pipe]
        default_every = LoopSettings().checkpoint_every_examples
        pipe_rate, pipe_cpu_rate, ckpts = _pipeline_rate(pipe, tmp, "ckpt")
        bare_rate, _, _ = _pipeline_rate(
            pipe, tmp, "bare", checkpoint_every_examples=10**7, checkpoint_every_seconds=3e7
        )

    rows.append(figure(BENCH, "learn_per_s", lib_rate, GOAL_PER_S, n, per_cpu_s=lib_cpu_rate))
    rows.append(figure(BENCH, "raw_vw_learn_prebuilt_per_s", raw_rate, None, n))
    rows.append(figure(BENCH, "raw_vw_learn_naive_text_per_s", naive_rate, None, n))
    if direct_rate is not None:
        rows.append(figure(BENCH, "raw_pylibvw_learn_prebuilt_per_s", direct_rate, None, n))
    rows.append(figure(BENCH, "ratio_learn_vs_raw_vw", lib_rate / raw_rate, None, n))
    rows.append(figure(BENCH, "ratio_learn_vs_raw_vw_naive_text", lib_rate / naive_rate, None, n))
    rows.append(
        figure(
            BENCH,
            "pipeline_learn_per_s",
            pipe_rate,
            GOAL_PER_S,
            n_pipe,
            per_cpu_s=pipe_cpu_rate,
            checkpoint_every_examples=default_every,
            checkpoints=ckpts,
        )
    )
    rows.append(figure(BENCH, "pipeline_learn_no_checkpoint_per_s", bare_rate, None, n_pipe))
    print_table("learner throughput (joined examples/s, one core)", rows)
    return rows


if __name__ == "__main__":
    cli(main, "learner throughput")
