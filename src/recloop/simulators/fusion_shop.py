"""A shop whose ranking fuses predicted scores, for learning the fusion weight.

The shop's baseline ranker orders candidates by ``score = click * (pay + a * phi)``: the
predicted click probability, times the predicted purchase probability plus ``a`` times a
third signal ``phi`` (here: the item's margin, which the business values beyond the
purchase itself). With ``a = 1`` that is the hand-tuned ranking; which ``a`` is best
depends on the user: bargain hunters buy what the predictions say, while users in a hurry
mostly buy high-margin premium items, so a larger ``a`` serves them better. The reward of a
request is ``click_weight * clicks + purchase_weight * purchases + margin_weight * margin
of purchases``.

A request's items carry the baseline models' predictions (``click``, ``pay``) and ``phi``
as features; the user's features say what kind of user they are only noisily (their recent
behaviour), so the fusion weight has to be learned from the state. Episodes are fixed-length
streams of independent requests (a contextual bandit over a continuous action).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recloop.agents.fusion import CLICK, PAY, PHI, fused_scores
from recloop.simulators.environment import Feedback, Floats, Request, check_ranking

"""Columns of ``Request.item_features``."""


@dataclass(frozen=True, slots=True)
class FusionShopConfig:
    n_users: int = 500
    candidates: int = 30
    slate_size: int = 5
    requests: int = 20_000
    """Requests per episode."""
    premium_share: float = 0.5
    """Share of users in a hurry (who buy high-margin items)."""
    premium_lift: float = 3.0
    """How much more such a user buys an item of the highest margin than of none (x)."""
    click_weight: float = 1.0
    purchase_weight: float = 1.0
    margin_weight: float = 2.0
    position_bias: float = 0.85
    feature_noise: float = 0.5
    """Std of the noise on the user-kind signal in the user features."""
    expected_rewards: bool = False
    """Reward each request with its expected value for the slate shown instead of the
    sampled clicks and purchases' (which vary ~60x more than the gains a fusion weight
    makes): separates whether a learner converges from how much data it needs for it."""


class FusionShop:
    """The simulator (``Environment``); totals of the episode so far in ``totals``."""

    def __init__(self, config: FusionShopConfig | None = None) -> None:
        self.config = cfg = config or FusionShopConfig()
        self.slate_size = cfg.slate_size
        self._rng = np.random.default_rng(0)
        self._premium = np.zeros(cfg.n_users, dtype=bool)
        self._current: Request | None = None
        self._left = 0
        self.totals = {"clicks": 0.0, "purchases": 0.0, "margin": 0.0, "reward": 0.0}

    def reset(self, seed: int) -> Request:
        cfg = self.config
        self._rng = np.random.default_rng([seed, 11])
        self._premium = self._rng.random(cfg.n_users) < cfg.premium_share
        self._left = cfg.requests
        self.totals = dict.fromkeys(self.totals, 0.0)
        request = self._next()
        assert request is not None
        return request

    def step(self, ranking: Sequence[int]) -> tuple[Feedback, Request | None]:
        cfg, rng, request = self.config, self._rng, self._current
        if request is None:
            raise RuntimeError("the episode is over: reset() first")
        order = np.asarray(check_ranking(ranking, cfg.slate_size), dtype=np.int64)
        slots = order[: cfg.slate_size]
        items = request.item_features[slots]
        clicked = rng.random(len(slots)) < items[:, CLICK] * cfg.position_bias ** np.arange(
            len(slots)
        )
        bought = clicked & (rng.random(len(slots)) < self.true_pay(request.user, items))
        clicks, purchases = clicked.astype(np.float64), bought.astype(np.float64)
        margin = float((purchases * items[:, PHI]).sum())
        reward = float(
            cfg.click_weight * clicks.sum()
            + cfg.purchase_weight * purchases.sum()
            + cfg.margin_weight * margin
        )
        if cfg.expected_rewards:
            reward = self.expected_reward(
                bool(self._premium[request.user]), items, range(len(slots))
            )
        for key, value in (
            ("clicks", clicks.sum()),
            ("purchases", purchases.sum()),
            ("margin", margin),
            ("reward", reward),
        ):
            self.totals[key] += float(value)
        return Feedback(request.candidates[slots], clicks, purchases, reward), self._next()

    def true_pay(self, user: int, items: Floats) -> Floats:
        """The ground truth P(purchase | click): the prediction for bargain hunters; for
        users in a hurry, scaled up with the margin (and down for low-margin items)."""
        return self._pay(bool(self._premium[user]), items)

    def _pay(self, premium: bool, items: Floats) -> Floats:
        if not premium:
            out: Floats = items[:, PAY]
            return out
        lift = (
            1.0 / self.config.premium_lift + (1.0 - 1.0 / self.config.premium_lift) * items[:, PHI]
        )
        scaled: Floats = np.clip(items[:, PAY] * lift * self.config.premium_lift**0.5, 0.0, 1.0)
        return scaled

    def _candidates(self, rng: np.random.Generator) -> Floats:
        n = self.config.candidates
        return np.column_stack(
            [rng.uniform(0.02, 0.3, n), rng.uniform(0.05, 0.4, n), rng.uniform(0.0, 1.0, n)]
        )

    def expected_reward(self, premium: bool, items: Floats, order: Sequence[int]) -> float:
        """The ground truth: the mean reward of showing ``order``'s slate of ``items`` to
        a user of that kind."""
        cfg = self.config
        shown = items[np.asarray(order[: cfg.slate_size], dtype=np.int64)]
        click = shown[:, CLICK] * cfg.position_bias ** np.arange(len(shown))
        per_click = cfg.click_weight + self._pay(premium, shown) * (
            cfg.purchase_weight + cfg.margin_weight * shown[:, PHI]
        )
        return float((click * per_click).sum())

    def true_advantages(
        self, premium: bool, weights: Floats, draws: int = 2000, seed: int = 0
    ) -> Floats:
        """``E[r | a] - E[r | a = 1]`` for each fusion weight ``a`` in ``weights``, over
        ``draws`` candidate sets: what an A head of score-fusion DDPG should learn."""
        rng = np.random.default_rng([seed, 12])
        out = np.zeros(len(weights))
        for _ in range(draws):
            items = self._candidates(rng)
            base = self.expected_reward(premium, items, _fused_order(items, 1.0))
            for j, a in enumerate(weights):
                out[j] += self.expected_reward(premium, items, _fused_order(items, a)) - base
        result: Floats = out / draws
        return result

    def _next(self) -> Request | None:
        cfg, rng = self.config, self._rng
        if self._left <= 0:
            self._current = None
            return None
        self._left -= 1
        user = int(rng.integers(cfg.n_users))
        kind = 1.0 if self._premium[user] else -1.0
        user_features = np.array([kind + cfg.feature_noise * rng.standard_normal(), 1.0])
        n = cfg.candidates
        items = self._candidates(rng)
        self._current = Request(
            user=user,
            time=float(cfg.requests - self._left),
            user_features=user_features,
            context=np.zeros(0),
            candidates=np.arange(n, dtype=np.int64),
            item_features=items,
            cross_features=np.zeros((n, 0)),
        )
        return self._current


def _fused_order(items: Floats, a: float) -> list[int]:
    order: list[int] = np.argsort(-fused_scores(items, a), kind="stable").tolist()
    return order
