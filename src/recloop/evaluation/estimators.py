"""IPS and SNIPS from running sufficient statistics, with normal-approximation intervals.

Each logged row contributes an importance weight ``w = pi(a|x) / p_log(a|x)`` and a reward
``r``. IPS is ``mean(w r)``; SNIPS is ``sum(w r) / sum(w)``. Both the point estimate and the
interval come from the same running sums, so they can never disagree, and the state is a
handful of floats however long the stream.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

Z95 = 1.959963984540054


@dataclass(slots=True)
class Estimate:
    value: float
    low: float
    high: float


@dataclass(slots=True)
class WeightedRewardStats:
    """Running sums over (weight, reward) pairs."""

    n: int = 0
    sum_w: float = 0.0
    sum_w2: float = 0.0
    sum_wr: float = 0.0
    sum_w2r: float = 0.0
    sum_w2r2: float = 0.0
    max_w: float = 0.0

    def add(self, weight: float, reward: float) -> None:
        self.n += 1
        self.sum_w += weight
        self.sum_w2 += weight * weight
        self.sum_wr += weight * reward
        self.sum_w2r += weight * weight * reward
        self.sum_w2r2 += (weight * reward) ** 2
        self.max_w = max(self.max_w, weight)

    def ips(self, z: float = Z95) -> Estimate:
        if self.n == 0:
            return Estimate(math.nan, math.nan, math.nan)
        mean = self.sum_wr / self.n
        var = max(self.sum_w2r2 / self.n - mean * mean, 0.0)
        half = z * math.sqrt(var / self.n) if self.n > 1 else math.inf
        return Estimate(mean, mean - half, mean + half)

    def snips(self, z: float = Z95) -> Estimate:
        if self.n == 0 or self.sum_w <= 0.0:
            return Estimate(math.nan, math.nan, math.nan)
        value = self.sum_wr / self.sum_w
        # delta method: Var = E[w^2 (r - V)^2] / (n E[w]^2)
        num = (self.sum_w2r2 - 2 * value * self.sum_w2r + value * value * self.sum_w2) / self.n
        mean_w = self.sum_w / self.n
        var = max(num, 0.0) / (mean_w * mean_w)
        half = z * math.sqrt(var / self.n) if self.n > 1 else math.inf
        return Estimate(value, value - half, value + half)

    def effective_sample_size(self) -> float:
        """Kish's ESS of the weights: how many on-policy rows the log is worth."""
        return (self.sum_w * self.sum_w) / self.sum_w2 if self.sum_w2 > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class MeanStats:
    """Running mean of observed rewards, with a normal interval."""

    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0

    def add(self, value: float) -> None:
        self.n += 1
        self.total += value
        self.total_sq += value * value

    def estimate(self, z: float = Z95) -> Estimate:
        if self.n == 0:
            return Estimate(math.nan, math.nan, math.nan)
        mean = self.total / self.n
        var = max(self.total_sq / self.n - mean * mean, 0.0)
        half = z * math.sqrt(var / self.n) if self.n > 1 else math.inf
        return Estimate(mean, mean - half, mean + half)
