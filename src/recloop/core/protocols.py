"""The seams of recloop. Every backend and policy implements one of these."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from recloop.core.arrays import FloatArray
from recloop.core.types import (
    Action,
    Activation,
    BehaviourEvent,
    Context,
    DeadLetter,
    Decision,
    ItemRecord,
    JoinedExample,
    LoggedDecision,
    Recommendation,
    Reward,
)


class Policy(Protocol):
    """Scores candidate actions for a context: higher is better."""

    name: str
    version: str

    def scores(self, context: Context, actions: Sequence[Action]) -> FloatArray: ...


class SelfExploringPolicy(Policy, Protocol):
    """A policy that explores in its own continuous action (the score-fusion DDPG's noise
    on its fusion weight) instead of through the loop's explorer over its scores. It gives
    the exact probability of each candidate leading, and draws with the loop's uniform
    number, so its decisions are logged, replayed and evaluated like any other."""

    def distribution(self, context: Context, actions: Sequence[Action]) -> FloatArray: ...

    def draw(self, context: Context, actions: Sequence[Action], u: float) -> Draw: ...


@dataclass(frozen=True)
class Draw:
    """A self-exploring policy's draw for one decision."""

    probabilities: FloatArray
    """Each candidate's probability of being chosen (exact)."""
    chosen: int
    scores: FloatArray
    """Scores that order the candidates as ``scores()`` does: the rest of the decision's
    ranking follows them (the draw computes them anyway; scoring again would double a
    decision's network passes)."""
    record: Mapping[str, float | int | str]
    """What else it drew, logged as ``Decision.exploration`` (the fusion DDPG: the served
    ``weight`` and its ``density`` under the noise, at a clipped bound that bound's
    probability; DRN's interleaving: the ``list`` the action came from and the
    ``perturbation`` seed)."""


def self_exploring(policy: Policy) -> SelfExploringPolicy | None:
    """The policy as a self-exploring one, or None. An attribute test, not a runtime
    protocol check: it runs on every decision, and ``isinstance`` against a protocol
    inspects every member each time."""
    if callable(getattr(policy, "draw", None)):
        return policy  # type: ignore[return-value]
    return None


class Explorer(Protocol):
    """Turns scores into a probability distribution. Pure; sampling happens elsewhere."""

    @property
    def name(self) -> str: ...

    def distribution(self, scores: FloatArray) -> FloatArray: ...


class Learner(Protocol):
    """Updates a policy one joined example at a time and snapshots it as a model version."""

    def learn_one(self, example: JoinedExample) -> None: ...

    def snapshot(self) -> bytes: ...


class OnlineLearner(Learner, Protocol):
    """The learner a loop's pipeline feeds (``recloop.kinds.models`` makes one by the
    loop's settings)."""

    kind: str
    """Written into each version's metadata: a learner resumes only from its own kind."""
    examples_learned: int

    @property
    def args(self) -> str: ...

    def scores(self, context: Context, actions: Sequence[Action]) -> FloatArray:
        """What the learner would score now (apprentice mode's imitation check)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One entry of the event log, with its offset."""

    offset: int
    kind: str
    """'decision', 'reward' or 'activation'."""
    event: LoggedDecision | Reward | Activation


class EventLog(Protocol):
    """Durable append-only log of decisions, rewards and activations.

    Appends return only once the record is durable (acknowledged = durable). Consumers
    read by offset. Appending a second decision with the same event id, a second
    activation, or a reward with an already-seen reward id raises DuplicateEventError.
    """

    def append_decision(self, decision: Decision) -> int: ...

    def append_reward(self, reward: Reward) -> int: ...

    def append_activation(self, activation: Activation) -> int: ...

    def decision_time(self, event_id: str) -> tuple[float, bool, float | None] | None:
        """(decision timestamp, deferred, activation timestamp) or None if unknown."""
        ...

    def get_decision(self, event_id: str) -> Decision | None: ...

    def read(self, after: int, limit: int) -> list[LogRecord]:
        """Records with offset > after, in offset order."""
        ...

    def end_offset(self) -> int: ...

    def dead_letter(self, letter: DeadLetter) -> None:
        """Keep a record that could not be used; idempotent per source offset."""
        ...

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]: ...

    def count(self, kind: str) -> int:
        """Records of a kind: 'decision', 'reward', 'activation' or 'dead_letter'."""
        ...

    def exclusive(self, across_processes: bool = True) -> AbstractContextManager[Any]:
        """A reentrant hold on the log for check-then-append sequences. In this process,
        ``read`` waits for it; ``across_processes`` also takes the database's write lock
        before the caller stamps its record, so stamp-to-commit stays short however many
        processes append. Either way, a record stamped before a reader took its clock
        reading is visible to that reader (across processes: within join_grace_seconds)."""
        ...

    def maintenance(self) -> None:
        """Housekeeping kept off the append path (SQLite: WAL checkpoint); called often."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ModelVersion:
    version: str
    created: float
    sha256: str
    meta: Mapping[str, Any]


_MAX_VERSION = 2**63 - 1
"""Versions are numbered by a 64-bit signed integer column (SQLite INTEGER, PostgreSQL
BIGINT)."""


def version_number(version: str) -> int | None:
    """The stored number a version string names, or None when it names none: only ASCII
    digits within 64 bits (``str.isdigit`` also passes "²" and other Unicode digits, which
    ``int`` then refuses, and a 30-digit number overflows the column: both were 500s)."""
    if not (version.isascii() and version.isdigit()):
        return None
    number = int(version)
    return number if number <= _MAX_VERSION else None


class ModelStore(Protocol):
    """Versioned models: put a version, get one, get the active one, roll back."""

    def put(self, blob: bytes, meta: Mapping[str, Any]) -> ModelVersion: ...

    def get(self, version: str) -> tuple[ModelVersion, bytes]:
        """Raises UnknownModelError for a version that is not stored."""
        ...

    def latest(self) -> ModelVersion | None:
        """The version servers should serve: the pinned one, or else the newest."""
        ...

    def newest(self) -> ModelVersion | None: ...

    def pinned(self) -> str | None: ...

    def activate(self, version: str) -> None:
        """Pin serving to `version` (rollback)."""
        ...

    def follow_newest(self) -> None:
        """Unpin: serve each new version as it arrives."""
        ...

    def versions(self, limit: int = 100) -> list[ModelVersion]:
        """Newest first."""
        ...

    def close(self) -> None: ...


class JoinedStore(Protocol):
    """Durable joined examples, consumer offsets and small named state.

    ``commit_joined`` writes examples, dead letters and offsets in one transaction and is
    idempotent per event id, so a replay after a crash never double-counts.
    """

    def commit_joined(
        self,
        examples: Sequence[JoinedExample],
        offsets: dict[str, int],
        letters: Sequence[DeadLetter],
    ) -> list[JoinedExample]:
        """Returns the examples actually inserted, with their seq."""
        ...

    def offset(self, name: str) -> int: ...

    def is_joined(self, event_id: str) -> bool: ...

    def read(self, after: int, limit: int) -> list[JoinedExample]:
        """Examples with seq > after, in seq order."""
        ...

    def iter_all(self, batch: int = 1000) -> Iterator[JoinedExample]: ...

    def count(self) -> int: ...

    def end_seq(self) -> int: ...

    def delete_joined(self, through_seq: int, joined_before: float) -> int:
        """Delete joined examples with ``seq <= through_seq`` joined before the given time,
        always keeping the newest one (``end_seq`` must not go back); returns how many."""
        ...

    def get_state(self, key: str) -> str | None: ...

    def set_state(self, key: str, value: str) -> None: ...

    def delete_state(self, key: str) -> None: ...

    def states(self, prefix: str) -> dict[str, str]: ...

    def close(self) -> None: ...


class BehaviourLog(Protocol):
    """The stream's durable input: behaviour events in arrival order, each with an offset."""

    def append(self, events: Sequence[BehaviourEvent]) -> list[int | None]:
        """Durably append (one commit); returns each event's offset, None for a duplicate
        event id (already logged: acknowledged before, not logged twice)."""
        ...

    def read(self, after: int, limit: int) -> list[tuple[int, BehaviourEvent]]: ...

    def last_offset(self) -> int: ...

    def close(self) -> None: ...


class RecommendationStore(Protocol):
    """Precomputed recommendations, one key lookup per user, plus the popular fallback."""

    def put_many(self, recs: Sequence[Recommendation], written_at: float) -> int:
        """Upsert; a list never replaces one from a newer state version. Returns how many
        were written."""
        ...

    def get(self, user_id: str) -> tuple[Recommendation, float] | None:
        """The user's list and when it was written."""
        ...

    def put_popular(self, rec: Recommendation, written_at: float) -> None: ...

    def get_popular(self) -> tuple[Recommendation, float] | None: ...

    def close(self) -> None: ...


class StreamStore(RecommendationStore, Protocol):
    """A recommendation store with a few meta keys beside the lists (both backends): the
    stream runner's board (``streaming/board.py``)."""

    def get_meta(self, key: str) -> bytes | None: ...

    def put_meta(self, key: str, value: bytes) -> None: ...

    def swap_meta(self, key: str, expect: bytes | None, value: bytes) -> bool:
        """Set ``key`` to ``value`` only if it holds ``expect`` now (None: absent)."""
        ...

    def delete(self, user_id: str) -> int:
        """Delete one user's list (privacy); returns how many (0 or 1)."""
        ...


class StreamStateStore(Protocol):
    """Snapshots of the stream processor, committed atomically with the runner's offset."""

    def save(
        self,
        offset: int,
        users: Iterable[tuple[str, dict[str, Any] | None]],
        meta: dict[str, Any],
        dead: Sequence[tuple[str, BehaviourEvent]] = (),
    ) -> None: ...

    def load(self) -> tuple[int, dict[str, dict[str, Any]], dict[str, Any]]: ...

    def close(self) -> None: ...


class ItemWriter(Protocol):
    """One write transaction on an item catalogue: items and the feature generator's state
    change together, and no other process writes in between."""

    def state(self) -> tuple[int, bytes | None]:
        """(version, blob) of the generator's stored state; (0, None) before any."""
        ...

    def get(self, item_id: str) -> ItemRecord | None: ...

    def put(self, records: Sequence[ItemRecord]) -> None:
        """Insert or replace; the store assigns each a new ``seq``."""
        ...

    def delete(self, item_ids: Sequence[str]) -> int:
        """Tombstone these items (readers of the change feed see the deletion)."""
        ...

    def set_state(self, blob: bytes) -> int:
        """Store the generator's state; returns its new version."""
        ...


class ItemStore(Protocol):
    """The item catalogue: raw fields and generated features per item, with a change feed
    (``since``) that other processes follow to keep their in-memory copies fresh."""

    def writing(self) -> AbstractContextManager[ItemWriter]: ...

    def get(self, item_id: str) -> ItemRecord | None:
        """None for an unknown or deleted item."""
        ...

    def since(self, seq: int, limit: int = 10_000) -> list[ItemRecord]:
        """Changes after ``seq`` (deletions included), in seq order."""
        ...

    def last_seq(self) -> int: ...

    def state(self) -> tuple[int, bytes | None]: ...

    def count(self) -> int:
        """Live (not deleted) items."""
        ...

    def items(self, after: str = "", limit: int = 1000) -> list[ItemRecord]:
        """Live items in id order, after ``after`` (paging)."""
        ...

    def close(self) -> None: ...
