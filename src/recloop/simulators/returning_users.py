"""A synthetic news feed whose users come back, or not, depending on what they were shown.

Why: the long-term value of a recommendation is not only its click. Here some items are
*clickbait*: a little more clickable, but a clicked clickbait item disappoints, and a
disappointed user returns later. Showing good items earns fewer clicks now and more visits
(hence more clicks) over the following days. A recommender that sees only clicks prefers
clickbait; one that also values the user's return (DRN's activeness) should not.

* Users have tastes over categories (Dirichlet). Items have a category, a clickbait score
  ``b`` (observable, like a sensational headline), and a value ``v`` that drives purchases.
* A shown item is clicked with probability ``position_bias^slot * sigmoid(click_bias +
  taste_weight * n_categories * taste[category] + clickbait_weight * b)``; a click becomes a
  purchase with probability ``sigmoid(purchase_bias + purchase_weight * v)``: separate click
  and purchase propensities.
* After each visit the user's satisfaction is ``sum over clicks of (quality - 0.5)`` with
  quality ``1 - b``, minus ``no_click_penalty`` without a click; the gap to their next visit
  is exponential with mean ``mean_gap_seconds * exp(-return_sensitivity * satisfaction)``.
* What a recommender observes of a user: their decayed clicks per category, DRN activeness
  (``features/activeness.py``), time since their last visit, visits so far; of the moment,
  the hour of day; of an item, its category, ``b`` and ``v``; of the pair, the user's share
  of clicks in the item's category.

The episode runs ``horizon_days`` of simulated time; requests come in time order.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from recloop.features.activeness import Activeness
from recloop.simulators.environment import Feedback, Floats, Ints, Request, check_ranking

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class ReturningUsersConfig:
    n_users: int = 200
    n_items: int = 1000
    n_categories: int = 8
    candidates: int = 20
    """Items offered per request (drawn uniformly from the catalogue)."""
    slate_size: int = 5
    horizon_days: float = 30.0
    taste_concentration: float = 0.5
    """Dirichlet concentration of tastes (small: users care about few categories)."""
    click_bias: float = -2.0
    taste_weight: float = 0.6
    clickbait_weight: float = 0.6
    """How much more clickable clickbait is (in logits, at b = 1)."""
    position_bias: float = 0.85
    purchase_bias: float = -2.0
    purchase_weight: float = 2.0
    mean_gap_seconds: float = 2 * DAY
    return_sensitivity: float = 1.5
    no_click_penalty: float = 0.2
    interest_half_life_seconds: float = 7 * DAY
    """Half-life of the observed per-category click counts."""
    taste_shift_days: float = 0.0
    """Mean days between a user's changes of taste (a fresh draw of what they like, found
    only by showing them something else); 0: tastes never change."""
    activeness: Activeness = field(default_factory=Activeness)


@dataclass(slots=True)
class _User:
    taste: Floats
    interests: Floats
    """Decayed clicks per category as the system observes them."""
    last_visit: float = -1.0
    activeness: float = 0.0
    visits: int = 0


class ReturningUsers:
    """The simulator (``Environment``); totals of the episode so far in ``totals``."""

    def __init__(self, config: ReturningUsersConfig | None = None) -> None:
        self.config = cfg = config or ReturningUsersConfig()
        self.slate_size = cfg.slate_size
        world = np.random.default_rng(0)  # the catalogue: fixed, whatever the episode seed
        self.category = world.integers(0, cfg.n_categories, cfg.n_items)
        self.clickbait = world.random(cfg.n_items)
        self.value = world.random(cfg.n_items)
        eye = np.eye(cfg.n_categories)
        self.item_features: Floats = np.column_stack(
            [eye[self.category], self.clickbait, self.value]
        )
        self._rng = np.random.default_rng(0)
        self._users: list[_User] = []
        self._queue: list[tuple[float, int]] = []
        self._current: Request | None = None
        self.totals = {"clicks": 0.0, "purchases": 0.0, "visits": 0.0, "returns": 0.0}
        self.per_user: dict[str, Floats] = {}
        """The same totals per user (users are the independent units for intervals)."""

    # -- the episode ----------------------------------------------------------------------
    def reset(self, seed: int) -> Request:
        cfg = self.config
        self._rng = rng = np.random.default_rng([seed, 7])
        tastes = rng.dirichlet(np.full(cfg.n_categories, cfg.taste_concentration), cfg.n_users)
        self._users = [_User(t, np.zeros(cfg.n_categories)) for t in tastes]
        self._queue = [(float(rng.uniform(0, DAY)), u) for u in range(cfg.n_users)]
        heapq.heapify(self._queue)
        self.totals = dict.fromkeys(self.totals, 0.0)
        self.per_user = {k: np.zeros(cfg.n_users) for k in self.totals}
        request = self._next()
        assert request is not None
        return request

    def step(self, ranking: Sequence[int]) -> tuple[Feedback, Request | None]:
        cfg, rng = self.config, self._rng
        request = self._current
        if request is None:
            raise RuntimeError("the episode is over: reset() first")
        order = np.asarray(check_ranking(ranking, cfg.slate_size), dtype=np.int64)
        shown: Ints = request.candidates[order[: cfg.slate_size]]
        user = self._users[request.user]
        clicks = (rng.random(len(shown)) < self.click_probability(request.user, shown)).astype(
            np.float64
        )
        buy = 1.0 / (1.0 + np.exp(-(cfg.purchase_bias + cfg.purchase_weight * self.value[shown])))
        purchases = clicks * (rng.random(len(shown)) < buy)
        # what the system observes: clicks per category
        np.add.at(user.interests, self.category[shown], clicks)
        satisfaction = float((clicks * (0.5 - self.clickbait[shown])).sum())
        if clicks.sum() == 0:
            satisfaction -= cfg.no_click_penalty
        mean_gap = cfg.mean_gap_seconds * math.exp(-cfg.return_sensitivity * satisfaction)
        heapq.heappush(self._queue, (request.time + float(rng.exponential(mean_gap)), request.user))
        self._count(request.user, "clicks", float(clicks.sum()))
        self._count(request.user, "purchases", float(purchases.sum()))
        return Feedback(shown, clicks, purchases, float(clicks.sum())), self._next()

    def click_probability(self, user: int, items: Ints) -> Floats:
        """The ground truth: P(click) of each item in slots 0, 1, ... for this user."""
        cfg = self.config
        taste = self._users[user].taste[self.category[items]] * cfg.n_categories
        logit = (
            cfg.click_bias + cfg.taste_weight * taste + cfg.clickbait_weight * self.clickbait[items]
        )
        out: Floats = cfg.position_bias ** np.arange(len(items)) / (1.0 + np.exp(-logit))
        return out

    # -- internals ------------------------------------------------------------------------
    def _count(self, user: int, key: str, value: float) -> None:
        self.totals[key] += value
        self.per_user[key][user] += value

    def _next(self) -> Request | None:
        cfg, rng = self.config, self._rng
        if not self._queue or self._queue[0][0] > cfg.horizon_days * DAY:
            self._current = None
            return None
        now, u = heapq.heappop(self._queue)
        user = self._users[u]
        if user.visits == 0:
            user.activeness = cfg.activeness.start
            since = 0.0
        else:
            since = now - user.last_visit
            if cfg.taste_shift_days > 0 and rng.random() > math.exp(
                -since / (cfg.taste_shift_days * DAY)
            ):
                user.taste = rng.dirichlet(np.full(cfg.n_categories, cfg.taste_concentration))
            user.activeness = cfg.activeness.after_return(user.activeness, since)
            user.interests *= 0.5 ** (since / cfg.interest_half_life_seconds)
            self._count(u, "returns", 1.0)
        user.visits += 1
        user.last_visit = now
        self._count(u, "visits", 1.0)
        total = user.interests.sum()
        interests = user.interests / total if total > 0 else np.full(cfg.n_categories, 0.0)
        features = np.concatenate(
            [
                interests,
                [user.activeness, math.log1p(since / 3600.0) / 5.0, math.log1p(user.visits) / 5.0],
            ]
        )
        hour = 2 * math.pi * (now % DAY) / DAY
        candidates = rng.choice(cfg.n_items, cfg.candidates, replace=False).astype(np.int64)
        self._current = Request(
            user=u,
            time=now,
            user_features=features,
            context=np.array([math.sin(hour), math.cos(hour)]),
            candidates=candidates,
            item_features=self.item_features[candidates],
            cross_features=interests[self.category[candidates]][:, None],
        )
        return self._current
