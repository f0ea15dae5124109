"""What forgetting a user shares across the event-log backends.

Deleting rows from a log that other processes read by offset must keep offsets meaning
what they meant:

* the event log assigns ``MAX(offset) + 1``: deleting its newest row would hand that
  offset out again, and a joiner already past it would skip the new record. So the newest
  row is never deleted; forgetting turns it into a *tombstone* (kind ``forgotten``, no
  event id, no body) that every reader skips, and a later pass deletes it once it is no
  longer the newest;
* a joiner in another process may hold a forgotten decision in memory (its window still
  open) and commit it after the deletion. So forgetting first records a digest of each
  event id in the joined store's ``forgotten`` table, in the transaction that deletes the
  joined rows; ``commit_joined`` skips an example (or dead letter) whose event is listed.
  An entry is dropped once the joiner's committed replay position is past the end of the
  log at forgetting time: no joiner, running or restarted, can hold that event any more.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

TOMBSTONE = "forgotten"
"""The kind of an event-log row whose record was forgotten (readers skip it)."""
REPLAY_KEY = "joiner.replay_from"
"""The joiner's committed replay position (``recloop.learning.pipeline.REPLAY_KEY``)."""
CHUNK = 500
"""Event ids per DELETE statement."""


def forget_key(event_id: str) -> str:
    """How a joined store remembers a forgotten event: a digest, not the id itself."""
    return hashlib.sha256(event_id.encode()).hexdigest()


def chunks(items: Sequence[str], size: int = CHUNK) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@dataclass
class LoopForgetCounts:
    """What forgetting deleted from one loop's stores."""

    decisions: int = 0
    rewards: int = 0
    activations: int = 0
    dead_letters: int = 0
    joined: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class LogEraser(Protocol):
    """Deletes from one loop's event log and joined store (one per backend)."""

    backend: str

    def find_events(self, needle: bytes, match: MatchBody) -> set[str]:
        """Event ids of decisions (in the log or the joined store) whose encoded body
        contains ``needle`` and satisfies ``match``."""
        ...

    def forget(self, event_ids: Sequence[str], now: float) -> LoopForgetCounts:
        """Delete these events' decisions, rewards, activations, dead letters and joined
        examples; keep a joiner elsewhere from joining them later."""
        ...

    def delete_raw(self, before: float) -> int:
        """Delete log records stamped before ``before`` that the joiner is done with
        (at or before its committed replay position); returns how many."""
        ...

    def close(self) -> None: ...


class MatchBody(Protocol):
    def __call__(self, body: bytes, /) -> bool: ...
