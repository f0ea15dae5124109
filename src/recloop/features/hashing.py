"""Feature maps (a context's or an action's JSON features) as fixed-width dense vectors, for
the networks that serve and learn inside the decision loop.

The hashing trick, as VW does it for its own model: a number goes to the slot of its name,
a string (or a list's strings) to the slot of ``name=value`` with weight 1, nested maps are
flattened with dotted names. A second hash picks the sign, so collisions cancel on average
instead of adding up. CRC-32 rather than Python's ``hash``: the slots must be the same in
every process (the server that scores, the pipeline that learns, a restart).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]


class FeatureHasher:
    """``vector(features)`` -> (dim,) float64; the same input gives the same vector."""

    def __init__(self, dim: int) -> None:
        if dim < 1:
            raise ValueError("dim must be at least 1")
        self.dim = dim
        self._slots: dict[str, tuple[int, float]] = {}

    def _slot(self, key: str) -> tuple[int, float]:
        cached = self._slots.get(key)
        if cached is None:
            h = zlib.crc32(key.encode())
            cached = (h % self.dim, 1.0 if (h >> 31) & 1 == 0 else -1.0)
            if len(self._slots) < 1_000_000:  # bounded: free-text values would grow it
                self._slots[key] = cached
        return cached

    def vector(self, features: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> Floats:
        out = np.zeros(self.dim)
        self._add(out, features, "")
        if extra:
            self._add(out, extra, "")
        return out

    def _add(self, out: Floats, features: Mapping[str, Any], prefix: str) -> None:
        for name, value in features.items():
            key = f"{prefix}{name}"
            if value is None:
                continue
            if isinstance(value, bool):
                self._put(out, f"{key}={value}", 1.0)
            elif isinstance(value, int | float):
                self._put(out, key, float(value))
            elif isinstance(value, str):
                self._put(out, f"{key}={value}", 1.0)
            elif isinstance(value, Mapping):
                self._add(out, value, f"{key}.")
            elif isinstance(value, list | tuple):
                for item in value:
                    if isinstance(item, str):
                        self._put(out, f"{key}={item}", 1.0)
                    else:
                        self._put(out, key, float(item))

    def _put(self, out: Floats, key: str, value: float) -> None:
        slot, sign = self._slot(key)
        out[slot] += sign * value
