"""How far can a model on what the RecoGym adapter exposes go past RecoGym's organic counter?

``python -m benchmarks.recogym_ceiling [--quick]`` (needs the ``sims`` extra and RecoGym).
A logistic regression of the click on the adapter's features (the user's view share of the
product, whether they viewed it, the product's one-hot id; ``cross``: the product also
crossed with the user's whole view-share vector) is fitted on uniformly logged steps of
other seeds (unbiased, and several episodes' worth), then served greedily. Against it, on
the same seeds: RecoGym's organic counter served greedily (the harness's strongest
baseline). A learning agent with these features cannot do better than such a fit, so a tie
says the features, not the learner, set the ceiling. CTR per run, mean and 95% interval
over the runs (seeds 0, 1, 2; ``--quick``: seeds 0 and 1, 100 users).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from benchmarks.common import cli, mean_figure, print_table
from recloop.experiments.baselines import OrganicViews
from recloop.simulators.environment import Feedback, RandomRanker, Ranker, Request, play
from recloop.simulators.recogym_adapter import RecoGym, RecoGymConfig

BENCH = "recogym_ceiling"
PRODUCTS = 10


def features(request: Request, item: int, cross: bool) -> np.ndarray:
    """The adapter's pair and item features of one product (and, crossed, the product's
    one-hot times the user's view shares and browsing volume)."""
    base = np.concatenate([request.cross_features[item], request.item_features[item]])
    if not cross:
        return base
    return np.concatenate(
        [base, np.outer(request.item_features[item], request.user_features).ravel()]
    )


class FittedGreedy:
    """Shows the product the fitted model gives the highest click probability."""

    def __init__(self, model: LogisticRegression, cross: bool) -> None:
        self.model, self.cross = model, cross

    def rank(self, request: Request) -> list[int]:
        rows = [features(request, i, self.cross) for i in range(len(request.candidates))]
        p = self.model.predict_proba(np.array(rows))[:, 1]
        order: list[int] = np.argsort(-p, kind="stable").tolist()
        return order

    def observe(self, feedback: Feedback) -> None:
        """Learns nothing online: it was fitted on the uniform log."""


def uniform_log(seeds: list[int], users: int) -> tuple[dict[bool, np.ndarray], np.ndarray]:
    """Features of the shown product and its click, for every step of random rankings."""
    rows: dict[bool, list[np.ndarray]] = {False: [], True: []}
    clicks: list[float] = []

    def record(request: Request, feedback: Feedback) -> None:
        item = int(np.flatnonzero(request.candidates == feedback.shown[0])[0])
        for cross, out in rows.items():
            out.append(features(request, item, cross))
        clicks.append(float(feedback.clicks[0]))

    for seed in seeds:
        env = RecoGym(RecoGymConfig(users=users, products=PRODUCTS))
        play(env, RandomRanker(seed), seed, record)
    return {cross: np.array(out) for cross, out in rows.items()}, np.array(clicks)


def ctr(ranker: Ranker, seed: int, users: int) -> float:
    counts = [0.0, 0.0]

    def count(_request: Request, feedback: Feedback) -> None:
        counts[0] += float(feedback.clicks.sum())
        counts[1] += len(feedback.shown)

    play(RecoGym(RecoGymConfig(users=users, products=PRODUCTS)), ranker, seed, count)
    return counts[0] / counts[1]


def main(quick: bool) -> list[dict[str, Any]]:
    users = 100 if quick else 500
    seeds = [0, 1] if quick else [0, 1, 2]
    x, y = uniform_log([10, 11] if quick else [10, 11, 12, 13, 14, 15], users)
    models = {cross: LogisticRegression(max_iter=2000).fit(x[cross], y) for cross in x}
    rankers: dict[str, Any] = {
        "organic_views_greedy": lambda seed: OrganicViews(seed, greedy=True),
        "fitted_greedy": lambda seed: FittedGreedy(models[False], cross=False),
        "fitted_cross_greedy": lambda seed: FittedGreedy(models[True], cross=True),
    }
    rows = []
    for name, make in rankers.items():
        per_seed = [ctr(make(seed), seed, users) for seed in seeds]
        rows.append(
            mean_figure(
                BENCH,
                f"{name}_ctr",
                per_seed,
                per_seed=[round(c, 4) for c in per_seed],
                fitted_on=len(y),
            )
        )
    print_table("RecoGym: the organic counter against models fitted on uniform logs", rows)
    return rows


if __name__ == "__main__":
    cli(main, __doc__ or BENCH)
