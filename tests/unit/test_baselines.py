"""The strongest simple rankers judged beside every agent: each does what its docstring
says, from observations alone, and the learning one learns."""

from __future__ import annotations

import numpy as np

from recloop.experiments.baselines import LinearThompson, OrganicViews, RevealedQuality
from recloop.simulators.environment import Feedback, Request


def _recsim_like(topics: list[int], n_topics: int = 4) -> Request:
    onehot = np.eye(n_topics)[topics]
    return Request(
        user=0,
        time=0.0,
        user_features=np.zeros(2),
        context=np.zeros(0),
        candidates=np.arange(len(topics), dtype=np.int64),
        item_features=np.concatenate([onehot, np.zeros((len(topics), 2))], axis=1),
        cross_features=np.zeros((len(topics), 2)),
    )


def _revealed(clusters: list[int], quality: list[float]) -> Feedback:
    k = len(clusters)
    observed = {"cluster": np.array(clusters, float), "quality": np.array(quality)}
    return Feedback(np.arange(k), np.zeros(k), np.zeros(k), 0.0, observed)


def test_revealed_quality_ranks_unseen_topics_first_then_by_mean_revealed_quality():
    ranker = RevealedQuality(seed=0)
    ranker.observe(_revealed([0, 1], [2.0, -1.0]))
    ranker.observe(_revealed([0, 2], [0.0, 0.5]))  # topic 0's mean: 1.0
    order = ranker.rank(_recsim_like([1, 2, 0, 3]))
    assert order == [3, 2, 1, 0]  # topic 3 never seen; then 1.0 > 0.5 > -1.0


def _organic(views: list[float]) -> Request:
    m = len(views)
    share = np.array(views) / max(sum(views), 1.0)
    return Request(
        user=0,
        time=0.0,
        user_features=np.zeros(m + 1),
        context=np.zeros(0),
        candidates=np.arange(m, dtype=np.int64),
        item_features=np.eye(m),
        cross_features=np.stack([share, (np.array(views) > 0).astype(float)], axis=1),
    )


def test_organic_views_shows_products_in_proportion_to_the_users_views():
    ranker = OrganicViews(seed=0)
    firsts = [ranker.rank(_organic([0.0, 3.0, 1.0, 0.0]))[0] for _ in range(4000)]
    counts = np.bincount(firsts, minlength=4) / len(firsts)
    assert counts[0] == counts[3] == 0.0
    assert abs(counts[1] - 0.75) < 0.03 and abs(counts[2] - 0.25) < 0.03
    assert OrganicViews(seed=0, greedy=True).rank(_organic([0.0, 3.0, 1.0, 0.0]))[0] == 1
    assert sorted(OrganicViews(seed=0).rank(_organic([0.0] * 5))) == list(range(5))


def test_linear_thompson_learns_which_feature_brings_clicks():
    """Clicks come with probability x0 of the shown item: the bandit ends up showing the
    items with high x0, where random shows the average."""
    rng = np.random.default_rng(0)
    ranker = LinearThompson(dim=3, seed=0)
    shown_x = []
    for _ in range(600):
        x = rng.random((8, 2))
        request = Request(
            user=0,
            time=0.0,
            user_features=np.zeros(1),
            context=np.zeros(0),
            candidates=np.arange(8, dtype=np.int64),
            item_features=x,
            cross_features=np.ones((8, 1)),
        )
        first = ranker.rank(request)[0]
        shown_x.append(x[first, 0])
        click = float(rng.random() < x[first, 0])
        ranker.observe(Feedback(np.array([first]), np.array([click]), np.zeros(1), click))
    late = float(np.mean(shown_x[-200:]))
    # the best of 8 uniform draws averages 8/9; random 1/2
    assert late > 0.8, late
