"""Exploration in a policy's own continuous action: Gaussian noise on a score weight.

The score-fusion DDPG ranks by ``score_i(a) = intercept_i + a * slope_i`` (its fusion
``click * (pay + a * phi)``) and explores by serving ``a' = clip(mu + sigma * z, low,
high)`` with ``z ~ N(0, 1)`` instead of ``mu``. Which candidate leads the ranking is then
random, and its probability is known exactly: each candidate leads on an interval of
``a'`` (the upper envelope of the score lines), so its probability is the normal mass of
that interval, plus the clipped tails' point masses at ``low`` and ``high``. Logging that
probability makes a decision of this policy as usable for off-policy evaluation as one of
an explorer over scores (``Decision.probability`` is exact, not estimated).

:func:`draw` takes one uniform number (the loop's, derived from the event id), so a
decision replays exactly, and picks what :func:`leader_probabilities` says it picks with
the probability it says: both take the leader with ``numpy.argmax`` semantics (ties to the
lowest index).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from recloop.core.arrays import FloatArray

_NORMAL = NormalDist()
_U_EDGE = 1e-12
"""Uniform numbers are kept this far inside (0, 1): the normal quantile of 0 is -inf."""


@dataclass(frozen=True)
class WeightNoise:
    """``a' = clip(mean + sigma * z, low, high)``; ``sigma = 0`` serves the mean."""

    sigma: float
    low: float
    high: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.sigma) and self.sigma >= 0):
            raise ValueError(f"sigma must be finite and >= 0, got {self.sigma}")
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low <= self.high):
            raise ValueError(f"need finite low <= high, got [{self.low}, {self.high}]")

    def weight(self, mean: float, u: float) -> float:
        """The served weight for the uniform number ``u`` (inverse-CDF of the noise)."""
        if self.sigma == 0:
            return min(max(mean, self.low), self.high)
        z = _NORMAL.inv_cdf(min(max(u, _U_EDGE), 1.0 - _U_EDGE))
        return min(max(mean + self.sigma * z, self.low), self.high)

    def density(self, mean: float, weight: float) -> float:
        """The density of a served ``weight`` (at a clipped bound, or without noise: the
        probability of that point)."""
        if self.sigma == 0:
            return 1.0
        if weight <= self.low:
            return self._mass_below(self.low, mean)
        if weight >= self.high:
            return 1.0 - self._mass_below(self.high, mean)
        return _NORMAL.pdf((weight - mean) / self.sigma) / self.sigma

    def _mass_below(self, x: float, mean: float) -> float:
        """P(mean + sigma z < x), the clipped tails aside."""
        return _NORMAL.cdf((x - mean) / self.sigma)


def _leader(intercepts: FloatArray, slopes: FloatArray, a: float) -> int:
    return int(np.argmax(intercepts + a * slopes))


def _next_break(intercepts: FloatArray, slopes: FloatArray, leader: int, x: float) -> float:
    """Where a steeper line first overtakes ``leader`` to the right of ``x`` (inf: never)."""
    steeper = slopes > slopes[leader]
    if not steeper.any():
        return math.inf
    with np.errstate(over="ignore", divide="ignore"):  # nearly parallel: they cross far off
        gaps = intercepts[leader] - intercepts[steeper]
        crossings = gaps / (slopes[steeper] - slopes[leader])
    ahead = crossings[crossings > x]
    return float(ahead.min()) if ahead.size else math.inf


def leader_probabilities(
    intercepts: FloatArray, slopes: FloatArray, mean: float, noise: WeightNoise
) -> FloatArray:
    """P(candidate i scores highest) when the weight is ``noise``'s draw around ``mean``.

    A sweep along the upper envelope from ``low`` to ``high``: each segment's leader is
    taken by ``argmax`` at its midpoint (the same rule :func:`draw` uses), so rounding in a
    breakpoint moves mass by at most that rounding, never to the wrong candidate. At most
    one step per candidate (the leader's slope only grows)."""
    b = np.asarray(intercepts, dtype=np.float64)
    m = np.asarray(slopes, dtype=np.float64)
    probs = np.zeros(b.shape[0])
    if b.shape[0] == 0:
        return probs
    if noise.sigma == 0:
        probs[_leader(b, m, noise.weight(mean, 0.5))] = 1.0
        return probs
    low, high = noise.low, noise.high
    below_low = noise._mass_below(low, mean)
    probs[_leader(b, m, low)] += below_low
    probs[_leader(b, m, high)] += 1.0 - noise._mass_below(high, mean)
    x, mass_x = low, below_low
    for _ in range(b.shape[0] + 1):
        if x >= high:
            break
        probe = min(x + max(1e-9, 1e-9 * abs(x)), (x + high) / 2)  # just right of x
        leader = _leader(b, m, probe)
        nxt = min(_next_break(b, m, leader, x), high)
        mass_next = noise._mass_below(nxt, mean)
        probs[_leader(b, m, (x + nxt) / 2)] += mass_next - mass_x
        x, mass_x = nxt, mass_next
    total = probs.sum()
    out: FloatArray = probs / total
    return out


def draw(
    intercepts: FloatArray, slopes: FloatArray, mean: float, noise: WeightNoise, u: float
) -> tuple[int, float]:
    """(leading candidate, served weight) for the uniform number ``u``."""
    a = noise.weight(mean, u)
    return _leader(np.asarray(intercepts), np.asarray(slopes), a), a
