"""The seams of recloop. Every backend and policy implements one of these."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from recloop.core.types import (
    Action,
    Activation,
    Context,
    DeadLetter,
    Decision,
    JoinedExample,
    Reward,
)


class Policy(Protocol):
    """Scores candidate actions for a context: higher is better."""

    name: str
    version: str

    def scores(self, context: Context, actions: Sequence[Action]) -> np.ndarray: ...


class Explorer(Protocol):
    """Turns scores into a probability distribution. Pure; sampling happens elsewhere."""

    @property
    def name(self) -> str: ...

    def distribution(self, scores: np.ndarray) -> np.ndarray: ...


class Learner(Protocol):
    """Updates a policy one joined example at a time and snapshots it as a model version."""

    def learn_one(self, example: JoinedExample) -> None: ...

    def snapshot(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One entry of the event log, with its offset."""

    offset: int
    kind: str
    """'decision', 'reward' or 'activation'."""
    event: Decision | Reward | Activation


class EventLog(Protocol):
    """Durable append-only log of decisions, rewards and activations.

    Appends return only once the record is durable. Consumers read by offset.
    """

    def append_decision(self, decision: Decision) -> int: ...

    def append_reward(self, reward: Reward) -> int: ...

    def append_activation(self, activation: Activation) -> int: ...

    def decision_time(self, event_id: str) -> tuple[float, bool, float | None] | None:
        """(decision timestamp, deferred, activation timestamp) or None if unknown."""
        ...

    def read(self, after: int, limit: int) -> list[LogRecord]: ...

    def dead_letter(self, letter: DeadLetter) -> None: ...

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]: ...

    def count(self, kind: str) -> int: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ModelVersion:
    version: str
    created: float
    sha256: str
    meta: Mapping[str, Any]


class ModelStore(Protocol):
    """Versioned models: put a version, get one, get the active one, roll back."""

    def put(self, blob: bytes, meta: Mapping[str, Any]) -> ModelVersion: ...

    def get(self, version: str) -> tuple[ModelVersion, bytes]: ...

    def latest(self) -> ModelVersion | None:
        """The version servers should serve: the pinned one, or else the newest."""
        ...

    def newest(self) -> ModelVersion | None: ...

    def activate(self, version: str) -> None:
        """Pin serving to `version` (rollback)."""
        ...

    def follow_newest(self) -> None:
        """Unpin: serve each new version as it arrives."""
        ...

    def versions(self) -> list[ModelVersion]: ...

    def close(self) -> None: ...


class JoinedStore(Protocol):
    """Durable joined examples, with the joiner's offset committed atomically alongside."""

    def commit_joined(
        self, examples: Sequence[JoinedExample], joiner_offset: int, letters: Sequence[DeadLetter]
    ) -> None: ...

    def joiner_offset(self) -> int: ...

    def is_joined(self, event_id: str) -> bool: ...

    def read(self, after: int, limit: int) -> list[JoinedExample]: ...

    def iter_all(self) -> Iterator[JoinedExample]: ...

    def count(self) -> int: ...

    def get_state(self, key: str) -> str | None: ...

    def set_state(self, key: str, value: str) -> None: ...

    def close(self) -> None: ...
