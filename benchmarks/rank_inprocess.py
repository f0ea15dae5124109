"""In-process ``Loop.rank`` latency with a trained VW model, logging to SQLite included.

10 actions x 10 numeric features, context 10 numeric features. Yardstick in the same run:
raw ``vowpalwabbit.Workspace("--cb_adf --cb_type mtr -q CA")`` predict on pre-built text, and
predict including naive text building. A breakdown times each stage of ``rank`` on its own.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import vowpalwabbit

from benchmarks.common import (
    cli,
    direct_vw,
    figure,
    naive_lines,
    ns_to_ms,
    print_table,
    sample_ns,
    summarize,
    synthetic_requests,
    synthetic_reward,
)
from recloop import Loop
from recloop.core.clock import FakeClock
from recloop.core.validation import check_actions, check_features, to_action
from recloop.exploration.sampling import sample_index, uniform_from_event
from recloop.features.vw_text import adf_example
from recloop.log.codec import encode_decision
from recloop.policies.vw import VWPolicy

BENCH = "rank_inprocess"
RAW_ARGS = "--cb_adf --cb_type mtr -q CA --quiet"
GOAL_P50_MS = 0.1
GOAL_P99_MS = 0.3


def _cached_text_builder() -> Callable[[Any, Any], list[str]]:
    """The policy's text builder if the library has a caching one, else ``adf_example``."""
    try:
        from recloop.features.vw_text import VWText
    except ImportError:
        return adf_example
    return VWText().example


def _train(
    loop: Loop, clock: FakeClock, requests: list[Any], n_train: int, raw: vowpalwabbit.Workspace
) -> None:
    """Rank + reward ``n_train`` events through the loop, close their windows, learn them.

    The raw yardstick workspace learns the same examples (naive text) so both predict with a
    model of the same size.
    """
    for i in range(n_train):
        context, actions = requests[i % len(requests)]
        d = loop.rank(context, actions)
        value = synthetic_reward(context, actions[d.chosen_index]["features"])
        if value:
            loop.reward(d.event_id, value)
        lines = naive_lines(context, actions)
        lines[d.chosen_index + 1] = f"0:{-value}:{d.probability} {lines[d.chosen_index + 1]}"
        raw.learn(lines)
    clock.advance(loop.settings.exp_unit_seconds + loop.settings.join_grace_seconds + 1.0)
    loop.step()


def main(quick: bool = False) -> list[dict[str, Any]]:
    n = 3000 if quick else 20000
    n_train = 1000 if quick else 3000
    warmup = 500 if quick else 2000
    n_parts = 1000 if quick else 5000
    n_unique = 1000 if quick else 4000
    requests = synthetic_requests(256, seed=1)
    rows: list[dict[str, Any]] = []

    with tempfile.TemporaryDirectory(prefix="recloop-bench-rank-") as tmp:
        clock = FakeClock(time.time())
        loop = Loop.open(tmp, start=False, clock=clock, checkpoint_every_examples=n_train)
        raw = vowpalwabbit.Workspace(RAW_ARGS)
        policy: VWPolicy | None = None
        try:
            _train(loop, clock, requests, n_train, raw)
            version = loop.model_version
            if not version.isdigit():
                raise RuntimeError(f"no trained model is served (model_version={version!r})")

            # -- the figure: Loop.rank, logging included ---------------------------------
            decisions = []

            def rank(i: int) -> None:
                context, actions = requests[i % len(requests)]
                d = loop.rank(context, actions)
                if len(decisions) < 512:
                    decisions.append(d)

            loop_ms = summarize(ns_to_ms(sample_ns(rank, n, warmup)))

            # -- the same with no repeated action features (defeats any text caching) ---
            unique = synthetic_requests(n_unique + 200, seed=5, catalogue=None)
            unique_ms = summarize(
                ns_to_ms(sample_ns(lambda i: loop.rank(*unique[i]), n_unique, 200))
            )

            # -- yardstick: raw VW predict -----------------------------------------------
            prebuilt = [naive_lines(c, a) for c, a in requests]
            raw_ms = summarize(
                ns_to_ms(sample_ns(lambda i: raw.predict(prebuilt[i % len(prebuilt)]), n, warmup))
            )

            def raw_with_text(i: int) -> None:
                context, actions = requests[i % len(requests)]
                raw.predict(naive_lines(context, actions))

            raw_text_ms = summarize(ns_to_ms(sample_ns(raw_with_text, n, warmup)))

            # -- floor: the same predictions through pylibvw, without pyvw's wrappers ----
            direct = direct_vw(raw)
            direct_ms = None
            if direct is not None:
                texts = ["\n".join(lines) for lines in prebuilt]
                if direct[0](texts[0]) != raw.predict(prebuilt[0]):
                    raise RuntimeError("direct pylibvw predictions differ from Workspace.predict")
                direct_ms = summarize(
                    ns_to_ms(sample_ns(lambda i: direct[0](texts[i % len(texts)]), n, warmup))
                )

            # -- breakdown: each stage of Loop.rank on its own ---------------------------
            _, blob = loop.models.get(version)
            policy = VWPolicy.from_bytes(blob, version)
            acts = [tuple(to_action(a, i) for i, a in enumerate(r[1])) for r in requests]
            lib_lines = [adf_example(c, a) for (c, _), a in zip(requests, acts, strict=True)]
            explorer, seed = loop.explorer, loop.settings.seed
            score_arrays = [policy.scores(c, a) for (c, _), a in zip(requests, acts, strict=True)]
            event_ids = [uuid.uuid4().hex for _ in range(n_parts + 200)]

            def validate(i: int) -> None:
                context, actions = requests[i % len(requests)]
                parsed = tuple(to_action(a, j) for j, a in enumerate(actions))
                check_features(context, "context")
                check_actions(parsed, ())

            def text(i: int) -> None:
                k = i % len(requests)
                adf_example(requests[k][0], acts[k])

            cached_text = _cached_text_builder()

            def text_cached(i: int) -> None:
                k = i % len(requests)
                cached_text(requests[k][0], acts[k])

            def explore(i: int) -> None:
                scores = np.nan_to_num(score_arrays[i % len(score_arrays)], nan=-np.inf)
                probs = explorer.distribution(scores)
                chosen = sample_index(probs, uniform_from_event(event_ids[i], seed))
                sorted(range(len(scores)), key=lambda j: (j != chosen, -scores[j], j))

            def append(i: int) -> None:
                d = decisions[i % len(decisions)]
                loop.log.append_decision(dataclasses.replace(d, event_id=event_ids[i]))

            parts = {
                "validate": validate,
                "text_build": text,
                "text_build_cached": text_cached,
                "vw_predict": lambda i: raw.predict(lib_lines[i % len(lib_lines)]),
                "policy_scores": lambda i: policy.scores(
                    requests[i % len(requests)][0], acts[i % len(acts)]
                ),
                "explore_sample": explore,
                "uuid": lambda i: uuid.uuid4().hex,
                "encode_decision": lambda i: encode_decision(decisions[i % len(decisions)]),
                "sqlite_append": append,
            }
            part_ms = {
                name: summarize(ns_to_ms(sample_ns(fn, n_parts, 200))) for name, fn in parts.items()
            }
        finally:
            if policy is not None:
                policy.close()
            raw.finish()
            loop.close()

    extra = {"actions": 10, "features": 10, "model_version": version}
    rows.append(figure(BENCH, "p50_ms", loop_ms["p50"], GOAL_P50_MS, n, **extra))
    rows.append(figure(BENCH, "p99_ms", loop_ms["p99"], GOAL_P99_MS, n))
    rows.append(figure(BENCH, "mean_ms", loop_ms["mean"], None, n))
    rows.append(figure(BENCH, "unique_actions_p50_ms", unique_ms["p50"], None, n_unique))
    rows.append(figure(BENCH, "unique_actions_p99_ms", unique_ms["p99"], None, n_unique))
    rows.append(figure(BENCH, "raw_vw_predict_p50_ms", raw_ms["p50"], None, n))
    rows.append(figure(BENCH, "raw_vw_predict_p99_ms", raw_ms["p99"], None, n))
    rows.append(figure(BENCH, "raw_vw_naive_text_p50_ms", raw_text_ms["p50"], None, n))
    if direct_ms is not None:
        rows.append(figure(BENCH, "raw_pylibvw_predict_p50_ms", direct_ms["p50"], None, n))
    rows.append(figure(BENCH, "ratio_p50_vs_raw_vw", loop_ms["p50"] / raw_ms["p50"], None, n))
    rows.append(
        figure(BENCH, "ratio_p50_vs_raw_vw_naive_text", loop_ms["p50"] / raw_text_ms["p50"])
    )
    for name, stats in part_ms.items():
        rows.append(
            figure(BENCH, f"part_{name}_p50_ms", stats["p50"], None, n_parts, p99_ms=stats["p99"])
        )
    print_table("rank in-process (10 actions x 10 features, trained VW, SQLite log)", rows)
    return rows


if __name__ == "__main__":
    cli(main, "rank in-process latency")
