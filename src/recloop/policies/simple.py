"""Policies that need no model: the default before the first model, fixed, uniform, popular."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from recloop.core.arrays import FloatArray
from recloop.core.types import Action, Context, JoinedExample


@dataclass(slots=True)
class FirstAction:
    """Prefers the actions in the order the caller sent them (the usual default policy)."""

    name: str = "first-action"
    version: str = "default"

    def scores(self, context: Context, actions: Sequence[Action]) -> FloatArray:
        return -np.arange(len(actions), dtype=float)


@dataclass(slots=True)
class FixedAction:
    """Always prefers one action id (if offered), otherwise falls back to the given order."""

    action_id: str
    name: str = "fixed"
    version: str = "default"

    def scores(self, context: Context, actions: Sequence[Action]) -> FloatArray:
        scores = -np.arange(len(actions), dtype=float)
        for i, action in enumerate(actions):
            if action.id == self.action_id:
                scores[i] = 1.0
        return scores


@dataclass(slots=True)
class Uniform:
    """Scores every action the same; with a softmax explorer this is uniform random."""

    name: str = "uniform"
    version: str = "default"

    def scores(self, context: Context, actions: Sequence[Action]) -> FloatArray:
        return np.zeros(len(actions))


@dataclass(slots=True)
class MostPopular:
    """Prefers the action with the highest mean observed reward (context-free), learned online.

    Ignores the logging probabilities on purpose: it is a naive baseline.
    """

    prior_mean: float = 0.0
    prior_count: float = 1.0
    name: str = "most-popular"
    version: str = "online"
    _sums: dict[str, float] = field(default_factory=dict)
    _counts: dict[str, float] = field(default_factory=dict)

    def scores(self, context: Context, actions: Sequence[Action]) -> FloatArray:
        return np.array(
            [
                (self._sums.get(a.id, 0.0) + self.prior_mean * self.prior_count)
                / (self._counts.get(a.id, 0.0) + self.prior_count)
                for a in actions
            ]
        )

    def learn_one(self, example: JoinedExample) -> None:
        chosen = example.decision.chosen
        self._sums[chosen] = self._sums.get(chosen, 0.0) + example.reward
        self._counts[chosen] = self._counts.get(chosen, 0.0) + 1.0
