"""Time-decayed item popularity: the fallback list and the default candidate generator.

An event of weight ``w`` at time ``t`` contributes ``w * 2^(-(now - t) / half_life)`` to
its item's score. Each item keeps one number, its score scaled to a shared anchor time
(``sum w 2^((t - anchor) / half_life)``), so adding an event is O(1), the order of events
does not matter (up to float rounding), and reading at any ``now`` is one multiplication.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_WEIGHTS: Mapping[str, float] = {
    "view": 1.0,
    "click": 2.0,
    "cart": 3.0,
    "favourite": 3.0,
    "buy": 5.0,
    "custom": 1.0,
}
_MAX_EXPONENT = 500.0  # rebase before 2**exponent nears float overflow (2**1024)


@dataclass(slots=True)
class DecayedPopularity:
    half_life_seconds: float = 6 * 3600.0
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    anchor: float | None = None
    scaled: dict[str, float] = field(default_factory=dict)
    events: int = 0
    latest: float | None = None
    """Newest event time added: scores are read no earlier than this ("as of now")."""
    keep_top: int = 256
    """Size of the always-sorted head (``top`` reads it instead of scanning every item)."""
    _head: list[tuple[float, str]] = field(default_factory=list, init=False, repr=False)
    """(-scaled, item) of the ``keep_top`` most popular items, best first. Exact: scores
    only grow, so an item outside can only enter by beating the last one."""
    _in_head: set[str] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        if any(w <= 0 for w in self.weights.values()):
            raise ValueError("behaviour weights must be > 0")
        self.rebuild_head()

    def add(self, item_id: str, behaviour: str, timestamp: float) -> None:
        weight = self.weights.get(behaviour, 1.0)
        if self.anchor is None:
            self.anchor = timestamp
        exponent = (timestamp - self.anchor) / self.half_life_seconds
        if exponent > _MAX_EXPONENT:
            self._rebase(timestamp)
            exponent = 0.0
        old = self.scaled.get(item_id, 0.0)
        new = old + weight * 2.0**exponent
        self.scaled[item_id] = new
        self.events += 1
        if self.latest is None or timestamp > self.latest:
            self.latest = timestamp
        self._update_head(item_id, old, new)

    def _update_head(self, item: str, old: float, new: float) -> None:
        head = self._head
        key = (-new, item)
        if item in self._in_head:
            del head[bisect.bisect_left(head, (-old, item))]
            bisect.insort(head, key)
        elif len(head) < self.keep_top:
            bisect.insort(head, key)
            self._in_head.add(item)
        elif key < head[-1]:
            bisect.insort(head, key)
            self._in_head.discard(head.pop()[1])
            self._in_head.add(item)

    def rebuild_head(self) -> None:
        best = heapq.nsmallest(self.keep_top, ((-v, k) for k, v in self.scaled.items()))
        self._head = best
        self._in_head = {k for _, k in best}

    def load(self, other: DecayedPopularity) -> None:
        """Take another tracker's counts (a restored snapshot), keeping this one's head
        size and identity (policies hold a reference to it)."""
        self.anchor, self.scaled, self.events = other.anchor, dict(other.scaled), other.events
        self.latest = other.latest
        self.rebuild_head()

    def _rebase(self, new_anchor: float) -> None:
        assert self.anchor is not None
        factor = 2.0 ** (-(new_anchor - self.anchor) / self.half_life_seconds)
        self.scaled = {k: v * factor for k, v in self.scaled.items()}
        self.anchor = new_anchor
        self.rebuild_head()

    def score(self, item_id: str, now: float) -> float:
        if self.anchor is None:
            return 0.0
        return self.scaled.get(item_id, 0.0) * self._scale(now)

    def _scale(self, now: float) -> float:
        """Reading before the newest event would inflate every score (and can overflow):
        an old timestamp reads the scores as of the newest event instead."""
        assert self.anchor is not None
        if self.latest is not None and now < self.latest:
            now = self.latest
        exponent = -(now - self.anchor) / self.half_life_seconds
        return 2.0 ** min(exponent, 0.0) if exponent > -1000 else 0.0

    def top(
        self, k: int, now: float, exclude: set[str] | frozenset[str] = frozenset()
    ) -> list[tuple[str, float]]:
        """The ``k`` most popular items at ``now`` (ties by item id), minus ``exclude``."""
        if self.anchor is None or k <= 0:
            return []
        scale = self._scale(now)
        if k + len(exclude) <= len(self._head) or len(self._head) == len(self.scaled):
            out: list[tuple[str, float]] = []
            for neg, item in self._head:
                if item not in exclude:
                    out.append((item, -neg * scale))
                    if len(out) == k:
                        break
            return out
        candidates = (
            (v, item) for item, v in self.scaled.items() if item not in exclude and v > 0.0
        )
        best = heapq.nlargest(k, candidates, key=lambda x: (x[0], _Reversed(x[1])))
        return [(item, v * scale) for v, item in best]

    def __len__(self) -> int:
        return len(self.scaled)

    def to_dict(self) -> dict[str, Any]:
        return {
            "half_life_seconds": self.half_life_seconds,
            "weights": dict(self.weights),
            "anchor": self.anchor,
            "scaled": dict(self.scaled),
            "events": self.events,
            "latest": self.latest,
            "keep_top": self.keep_top,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DecayedPopularity:
        return cls(
            float(raw["half_life_seconds"]),
            dict(raw["weights"]),
            raw["anchor"],
            {str(k): float(v) for k, v in raw["scaled"].items()},
            int(raw["events"]),
            raw.get("latest"),
            int(raw.get("keep_top", 256)),
        )


class _Reversed:
    """Orders strings backwards, so that equal scores list the smaller item id first."""

    __slots__ = ("s",)

    def __init__(self, s: str) -> None:
        self.s = s

    def __lt__(self, other: _Reversed) -> bool:
        return self.s > other.s

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and self.s == other.s

    def __hash__(self) -> int:
        return hash(self.s)
