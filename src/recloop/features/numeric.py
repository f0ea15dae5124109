"""Numbers: robust scaling and quantile bins, both fitted incrementally.

A price of 12,000 next to prices of 10 would dominate a linear model's score; scaling by the
median and the inter-quartile range keeps outliers from setting the scale, and the quantile
bin gives the model a categorical handle on non-linear effects (cheap items vs dear ones).

Quantiles come from :class:`QuantileSketch`, a deterministic merge-and-compact summary of
bounded size: the same values in the same order give the same bins in every process (the
randomised sketches of datasketches do not promise that, and the bins are part of what a
model learned).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from recloop.core.arrays import FloatArray

CLIP = 5.0
"""Scaled values are clipped to +-CLIP: one absurd price must not swamp a linear model."""


class QuantileSketch:
    """Weighted points summarising every value seen, at most ``capacity`` of them.

    Exact until ``capacity`` values; then, each time it fills up, the sorted points are
    compacted to half as many at evenly spaced cumulative weights (rank error about
    1/capacity per compaction level).
    """

    def __init__(self, capacity: int = 1024) -> None:
        if capacity < 8:
            raise ValueError("capacity must be at least 8")
        self.capacity = capacity
        self.values: FloatArray = np.empty(0)
        self.weights: FloatArray = np.empty(0)
        self.count = 0

    def update(self, values: Iterable[float]) -> None:
        new = np.asarray(list(values), dtype=np.float64)
        if new.size == 0:
            return
        self.count += int(new.size)
        merged: FloatArray = np.concatenate([self.values, new])
        weights: FloatArray = np.concatenate([self.weights, np.ones(new.size)])
        order = np.argsort(merged, kind="stable")
        self.values, self.weights = merged[order], weights[order]
        while self.values.size > self.capacity:
            self._compact()

    def _compact(self) -> None:
        keep = self.capacity // 2
        cumulative = np.cumsum(self.weights)
        total = float(cumulative[-1])
        targets = (np.arange(keep) + 0.5) * (total / keep)
        picks = np.minimum(np.searchsorted(cumulative, targets), self.values.size - 1)
        self.values = self.values[picks]
        self.weights = np.full(keep, total / keep)

    def quantiles(self, qs: FloatArray) -> FloatArray:
        if self.values.size == 0:
            return np.zeros(len(qs))
        cumulative = np.cumsum(self.weights)
        ranks = np.asarray(qs) * float(cumulative[-1])
        picks = np.minimum(np.searchsorted(cumulative, ranks), self.values.size - 1)
        chosen: FloatArray = self.values[picks]
        return chosen

    def state(self) -> dict[str, Any]:
        return {
            "capacity": self.capacity,
            "count": self.count,
            "values": self.values.tolist(),
            "weights": self.weights.tolist(),
        }

    @classmethod
    def from_state(cls, raw: dict[str, Any]) -> QuantileSketch:
        sketch = cls(int(raw["capacity"]))
        sketch.count = int(raw["count"])
        sketch.values = np.asarray(raw["values"], dtype=np.float64)
        sketch.weights = np.asarray(raw["weights"], dtype=np.float64)
        return sketch


class NumericEncoder:
    """``{"z": robust-scaled value, "bin": "q<k>"}`` for one numeric field."""

    def __init__(self, bins: int = 10, sketch: QuantileSketch | None = None) -> None:
        self.bins = bins
        self.sketch = sketch or QuantileSketch()
        self._fitted: tuple[float, float, FloatArray] | None = None

    def partial_fit(self, values: Iterable[float]) -> None:
        self.sketch.update(values)
        self._fitted = None

    def _params(self) -> tuple[float, float, FloatArray]:
        if self._fitted is None:
            q1, median, q3 = self.sketch.quantiles(np.array([0.25, 0.5, 0.75]))
            iqr = float(q3 - q1)
            scale = iqr if iqr > 0 else (abs(float(median)) or 1.0)
            edges = self.sketch.quantiles(np.arange(1, self.bins) / self.bins)
            self._fitted = (float(median), scale, np.unique(edges))
        return self._fitted

    def encode(self, value: float) -> dict[str, Any]:
        median, scale, edges = self._params()
        z = max(-CLIP, min(CLIP, (value - median) / scale))
        return {"z": round(z, 4), "bin": f"q{int(np.searchsorted(edges, value, side='right'))}"}

    def describe(self) -> str:
        median, scale, edges = self._params()
        return (
            f"median {median:.4g}, scale (IQR) {scale:.4g}, {edges.size + 1} bins, "
            f"{self.sketch.count} values seen"
        )

    def state(self) -> dict[str, Any]:
        return {"bins": self.bins, "sketch": self.sketch.state()}

    @classmethod
    def from_state(cls, raw: dict[str, Any]) -> NumericEncoder:
        return cls(int(raw["bins"]), QuantileSketch.from_state(raw["sketch"]))


def to_number(value: Any) -> float | None:
    """A finite float from a number or a numeric string (CSV cells); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None
