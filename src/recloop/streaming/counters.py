"""What the stream runner counts: events, state updates, lists written, pauses, lag."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StreamCounters:
    events: int = 0
    state_updates: int = 0
    late: int = 0
    duplicates: int = 0
    triggers: int = 0
    recommendation_writes: int = 0
    snapshots: int = 0
    expired_users: int = 0
    failed: int = 0
    rebuilds: int = 0
    """Times the recommendation store was found empty and every list was recomputed."""
    rebuilt_lists: int = 0
    pauses: int = 0
    """Times the log or the store became unreachable and the runner paused."""
    lag_seconds: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=10_000)
    )
    """End-to-end lag (event time -> recommendation written), recent samples."""

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "lag_seconds"}

    def lags(self) -> list[float]:
        """The recent lag samples, sorted (safe while the runner thread appends)."""
        for _ in range(5):
            try:
                return sorted(self.lag_seconds)
            except RuntimeError:  # deque mutated during iteration: read again
                continue
        return []
