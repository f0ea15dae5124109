"""A synthetic news-reading population with a known ground truth.

Users are adults, teens or seniors; adults prefer politics, teens sports, seniors food.
The time of day is noise. A click on the preferred topic happens with probability
``p_best``, on another topic with ``p_other`` (plus small per-context noise), so the best
action per context, the optimum and the value of any policy are known exactly.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TOPICS = ("politics", "sports", "music", "food", "tech")
USERS = ("adult", "teen", "senior")
TIMES = ("morning", "evening")
PREFERENCE = {"adult": "politics", "teen": "sports", "senior": "food"}


@dataclass
class SyntheticPopulation:
    seed: int = 0
    p_best: float = 0.7
    p_other: float = 0.1
    noise: float = 0.05
    _rng: random.Random = field(init=False, repr=False)
    _table: dict[tuple[str, str, str], float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        table_rng = random.Random(1_000_003 + self.seed)
        self._table = {}
        for user in USERS:
            for time in TIMES:
                for topic in TOPICS:
                    base = self.p_best if PREFERENCE[user] == topic else self.p_other
                    jitter = table_rng.uniform(-self.noise, self.noise) if self.noise else 0.0
                    self._table[(user, time, topic)] = min(max(base + jitter, 0.0), 1.0)

    def context(self) -> dict[str, Any]:
        return {"user": {"age": self._rng.choice(USERS)}, "time": self._rng.choice(TIMES)}

    @staticmethod
    def actions() -> list[dict[str, Any]]:
        return [{"id": t, "features": {"topic": t}} for t in TOPICS]

    def click_probability(self, context: dict[str, Any], action_id: str) -> float:
        return self._table[(context["user"]["age"], context["time"], action_id)]

    def reward(self, context: dict[str, Any], action_id: str) -> float:
        """Draw a click (1.0) or not (0.0)."""
        return 1.0 if self._rng.random() < self.click_probability(context, action_id) else 0.0

    def best_action(self, context: dict[str, Any]) -> str:
        return max(TOPICS, key=lambda t: self.click_probability(context, t))

    def contexts(self) -> list[dict[str, Any]]:
        """Every context, each equally likely."""
        return [{"user": {"age": u}, "time": t} for u in USERS for t in TIMES]

    def value(self, policy: Callable[[dict[str, Any]], dict[str, float]]) -> float:
        """Exact expected reward of a policy given as context -> {action: probability}."""
        ctxs = self.contexts()
        total = 0.0
        for ctx in ctxs:
            for action_id, prob in policy(ctx).items():
                total += prob * self.click_probability(ctx, action_id)
        return total / len(ctxs)

    def optimum(self) -> float:
        return self.value(lambda c: {self.best_action(c): 1.0})

    def epsilon_greedy_optimum(self, epsilon: float) -> float:
        """Best achievable average reward while exploring epsilon-greedily."""
        n = len(TOPICS)

        def policy(ctx: dict[str, Any]) -> dict[str, float]:
            probs = dict.fromkeys(TOPICS, epsilon / n)
            probs[self.best_action(ctx)] += 1.0 - epsilon
            return probs

        return self.value(policy)
