"""Reward-to-model latency: how long after an event's window closes is a model serving it?

Real clock, background pipeline (``start=True``), ``exp_unit_seconds=1``, a checkpoint after
every example. Each trial ranks one event and rewards it, then polls until the served
``model_version`` is a version whose ``learner_offset`` covers the event's joined example.
The figure is the time beyond the window's end (decision time + exp_unit), p50 over trials.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

from benchmarks.common import cli, figure, print_table, summarize, synthetic_requests
from recloop import Loop

BENCH = "reward_to_model"
EXP_UNIT = 1.0
GOAL_S = 2.0
POLL_S = 0.002
TRIAL_TIMEOUT_S = 10.0


def _trial(loop: Loop, context: dict[str, Any], actions: list[dict[str, Any]]) -> dict[str, float]:
    base_seq = loop.joined.end_seq()
    d = loop.rank(context, actions)
    loop.reward(d.event_id, 1.0)
    window_end = d.timestamp + EXP_UNIT
    seq: int | None = None
    joined_at = stored_at = None
    offsets: dict[str, int] = {}  # version -> learner_offset (model metadata never changes)
    deadline = time.monotonic() + EXP_UNIT + TRIAL_TIMEOUT_S
    while time.monotonic() < deadline:
        now = time.time()
        if seq is None:
            for ex in loop.joined.read(base_seq, 100):
                if ex.decision.event_id == d.event_id:
                    seq, joined_at = ex.seq, now
        if seq is not None:
            if stored_at is None:
                newest = loop.models.newest()
                if newest is not None and newest.meta.get("learner_offset", 0) >= seq:
                    stored_at = now
            version = loop.model_version
            if version.isdigit():
                if version not in offsets:
                    offsets[version] = int(loop.models.get(version)[0].meta["learner_offset"])
                if offsets[version] >= seq:
                    stored_at = stored_at or now
                    return {
                        "served": now - window_end,
                        "joined": (joined_at or now) - window_end,
                        "stored": stored_at - window_end,
                    }
        time.sleep(POLL_S)
    raise TimeoutError(f"event {d.event_id} not served by a model within {TRIAL_TIMEOUT_S}s")


def main(quick: bool = False) -> list[dict[str, Any]]:
    trials = 4 if quick else 10
    requests = synthetic_requests(trials + 1, seed=3)
    results: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="recloop-bench-r2m-") as tmp:
        loop = Loop.open(
            tmp,
            start=True,
            exp_unit_seconds=EXP_UNIT,
            checkpoint_every_examples=1,
            checkpoint_every_seconds=0.1,
        )
        try:
            settings = loop.settings
            for i in range(trials):
                context, actions = requests[i]
                results.append(_trial(loop, context, actions))
        finally:
            loop.close()

    served = summarize([r["served"] for r in results])
    joined = summarize([r["joined"] for r in results])
    stored = summarize([r["stored"] for r in results])
    rows = [
        figure(
            BENCH,
            "p50_s_beyond_exp_unit",
            served["p50"],
            GOAL_S,
            trials,
            exp_unit_s=EXP_UNIT,
            join_grace_s=settings.join_grace_seconds,
            tick_s=settings.tick_seconds,
        ),
        figure(BENCH, "max_s_beyond_exp_unit", served["max"], GOAL_S, trials),
        figure(BENCH, "joined_p50_s_beyond_exp_unit", joined["p50"], None, trials),
        figure(BENCH, "stored_p50_s_beyond_exp_unit", stored["p50"], None, trials),
    ]
    print_table("reward -> model serving it (seconds after the window closes)", rows)
    return rows


if __name__ == "__main__":
    cli(main, "reward to model latency")
