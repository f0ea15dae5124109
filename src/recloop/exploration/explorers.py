"""Exploration strategies: pure functions of the scores (higher score = better action)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recloop.core.arrays import FloatArray
from recloop.core.errors import InvalidInputError


def _argmax_first(scores: FloatArray) -> int:
    """Index of the best score; ties go to the earliest action, so results are reproducible."""
    return int(np.argmax(scores))


@dataclass(frozen=True, slots=True)
class Greedy:
    """No exploration: all mass on the best-scored action."""

    name: str = "greedy"

    def distribution(self, scores: FloatArray) -> FloatArray:
        probs = np.zeros(len(scores))
        probs[_argmax_first(scores)] = 1.0
        return probs


@dataclass(frozen=True, slots=True)
class EpsilonGreedy:
    """1-epsilon on the best action, epsilon spread uniformly over all actions."""

    epsilon: float = 0.2
    name: str = "epsilon-greedy"

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon <= 1.0:
            raise InvalidInputError(f"epsilon must be in [0, 1], got {self.epsilon}")

    def distribution(self, scores: FloatArray) -> FloatArray:
        n = len(scores)
        probs = np.full(n, self.epsilon / n)
        probs[_argmax_first(scores)] += 1.0 - self.epsilon
        return probs


@dataclass(frozen=True, slots=True)
class Softmax:
    """Probabilities proportional to exp(lambda * score)."""

    temperature_inverse: float = 1.0
    name: str = "softmax"

    def __post_init__(self) -> None:
        if not self.temperature_inverse >= 0.0:
            raise InvalidInputError("softmax lambda must be >= 0")

    def distribution(self, scores: FloatArray) -> FloatArray:
        with np.errstate(over="ignore", invalid="ignore"):
            # by halves: score - max overflows to -inf for scores more than the float range
            # apart, and lambda 0 then made 0 * -inf = NaN, no probability for that action
            # (halving is exact above the subnormals: elsewhere, the same as before, bit for bit)
            z = self.temperature_inverse * (scores / 2 - np.max(scores) / 2) * 2
        e = np.exp(np.nan_to_num(z, nan=-np.inf))
        result: FloatArray = e / e.sum()
        return result


def make_explorer(
    name: str, epsilon: float = 0.2, softmax_lambda: float = 1.0
) -> Greedy | EpsilonGreedy | Softmax:
    """Build an explorer from its configured name."""
    if name in ("epsilon-greedy", "egreedy", "epsilon"):
        return EpsilonGreedy(epsilon)
    if name == "softmax":
        return Softmax(softmax_lambda)
    if name in ("greedy", "none"):
        return Greedy()
    raise InvalidInputError(f"unknown explorer {name!r}: choose epsilon-greedy, softmax or greedy")
