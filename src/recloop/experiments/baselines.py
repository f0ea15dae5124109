"""The strongest simple rankers a team would try first, judged beside every agent.

Each reads only what an agent may read (the request's features and the feedback's
observations), learns online from scratch in its run, and keeps no hidden state of the
environment. An agent earns its place by beating the best of these, not random.
"""

from __future__ import annotations

import numpy as np

from recloop.core.interaction import Feedback, Floats, Request
from recloop.simulators.recsim_adapter import topics_of


class RevealedQuality:
    """RecSim: rank each candidate by the mean ``quality`` responses revealed so far for its
    topic, topics never shown first (ties broken at random), the estimates kept across
    users. Quality is what lengthens a RecSim session (a watched document's quality tops up
    the user's time budget), so this heuristic chases long sessions without learning who
    the user is."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.total: dict[int, float] = {}
        self.count: dict[int, int] = {}

    def rank(self, request: Request) -> list[int]:
        topics = topics_of(request)
        score = np.array(
            [self.total[t] / self.count[t] if t in self.count else np.inf for t in topics.tolist()]
        )
        tiebreak = self.rng.random(len(score))
        order: list[int] = np.lexsort((tiebreak, -score)).tolist()
        return order

    def observe(self, feedback: Feedback) -> None:
        clusters = feedback.observations["cluster"].astype(np.int64).tolist()
        for topic, quality in zip(clusters, feedback.observations["quality"].tolist(), strict=True):
            self.total[topic] = self.total.get(topic, 0.0) + quality
            self.count[topic] = self.count.get(topic, 0) + 1


class OrganicViews:
    """RecoGym: recommend in proportion to how often this user viewed each product
    organically (RecoGym's own ``OrganicUserEventCounterAgent``, its strongest built-in
    agent: what a user browses is what they click); uniformly while they viewed nothing.
    ``greedy`` shows the most viewed product instead (ties at random)."""

    def __init__(self, seed: int, greedy: bool = False) -> None:
        self.rng = np.random.default_rng(seed)
        self.greedy = greedy

    def rank(self, request: Request) -> list[int]:
        views = np.asarray(request.cross_features[:, 0], dtype=np.float64)
        m = len(views)
        if self.greedy or views.sum() <= 0:
            order: list[int] = np.lexsort((self.rng.random(m), -views)).tolist()
            return order
        first = int(self.rng.choice(m, p=views / views.sum()))
        return [first, *(i for i in range(m) if i != first)]

    def observe(self, feedback: Feedback) -> None:
        """Learns nothing across users: the counts are the user's own."""


class LinearThompson:
    """A linear contextual bandit with Thompson sampling (Agrawal and Goyal, ICML 2013):
    Bayesian linear regression of each shown item's click on the request's user-item and
    item features, one posterior draw per request, candidates ranked by the drawn weights.
    Myopic by design (it maximises the next click): the bandit a team would try first."""

    def __init__(self, dim: int, seed: int, prior: float = 1.0, noise: float = 0.5) -> None:
        self.rng = np.random.default_rng(seed)
        self.precision = np.eye(dim) * prior
        self.target = np.zeros(dim)
        self.noise = noise
        self._shown: tuple[Request, Floats] | None = None

    @staticmethod
    def inputs(request: Request) -> Floats:
        return np.concatenate([request.cross_features, request.item_features], axis=1)

    def rank(self, request: Request) -> list[int]:
        x = self.inputs(request)
        cov = np.linalg.inv(self.precision)
        mean = cov @ self.target
        draw = self.rng.multivariate_normal(mean, self.noise**2 * cov, method="cholesky")
        self._shown = (request, x)
        order: list[int] = np.argsort(-(x @ draw), kind="stable").tolist()
        return order

    def observe(self, feedback: Feedback) -> None:
        assert self._shown is not None, "observe() follows rank()"
        request, x = self._shown
        where = {int(item): pos for pos, item in enumerate(request.candidates)}
        for item, click in zip(feedback.shown.tolist(), feedback.clicks.tolist(), strict=True):
            row = x[where[int(item)]]
            self.precision += np.outer(row, row)
            self.target += click * row
