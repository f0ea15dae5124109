"""The joiner: decisions + rewards -> joined examples at the end of each experimental unit.

Pure logic: no I/O, no clock of its own. The caller feeds log records in log order and
calls :meth:`Joiner.close_until` with a watermark time; windows whose deadline is at or
before the watermark are emitted. A decision's window starts at its timestamp, or at its
activation for a deferred decision; a deferred decision never activated within
``exp_unit`` is dropped from learning and reported as a dead letter ('not-activated').
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, cast

from recloop.core.errors import InvalidInputError
from recloop.core.types import (
    Activation,
    DeadLetter,
    Decision,
    JoinedExample,
    LoggedDecision,
    Reward,
)


class DecisionLike(Protocol):
    """What the joiner needs of a decision (a Decision, or a LoggedDecision still encoded)."""

    @property
    def event_id(self) -> str: ...

    @property
    def timestamp(self) -> float: ...

    @property
    def deferred(self) -> bool: ...


def _as_decision(decision: DecisionLike) -> Decision:
    return cast(Decision, decision)


class Aggregation(StrEnum):
    """How several rewards for one event become one value."""

    EARLIEST = "earliest"
    SUM = "sum"
    LAST = "last"


@dataclass(slots=True)
class _Pending:
    decision: DecisionLike
    offset: int
    deadline: float
    activated: bool
    rewards: list[Reward] = field(default_factory=list)


def aggregate(rewards: list[Reward], rule: Aggregation) -> float:
    if rule is Aggregation.SUM:
        return sum(r.value for r in rewards)
    ordered = sorted(rewards, key=lambda r: r.timestamp)
    return ordered[0].value if rule is Aggregation.EARLIEST else ordered[-1].value


class Joiner:
    """Joins rewards to decisions within ``exp_unit`` seconds; see the module docstring."""

    def __init__(
        self,
        exp_unit: float,
        default_reward: float = 0.0,
        aggregation: Aggregation | str = Aggregation.EARLIEST,
        materialize: Callable[[DecisionLike], Decision] = _as_decision,
    ) -> None:
        """``materialize`` turns what was fed to :meth:`on_decision` into a Decision when
        its window closes (e.g. decodes a LoggedDecision); by default it is the identity."""
        if not exp_unit > 0:
            raise InvalidInputError("exp_unit must be > 0 seconds")
        self.exp_unit = exp_unit
        self.default_reward = default_reward
        self.aggregation = Aggregation(aggregation)
        self._materialize = materialize
        self._pending: dict[str, _Pending] = {}
        self._deadlines: list[tuple[float, int, str]] = []  # heap, lazily invalidated

    def __len__(self) -> int:
        return len(self._pending)

    def low_watermark(self) -> int | None:
        """Smallest log offset of a decision still pending (where a replay must start).

        O(1): decisions arrive in offset order and dicts keep insertion order."""
        for pending in self._pending.values():
            return pending.offset
        return None

    def is_pending(self, event_id: str) -> bool:
        return event_id in self._pending

    def on_decision(self, decision: DecisionLike, offset: int) -> None:
        deadline = decision.timestamp + self.exp_unit
        self._pending[decision.event_id] = _Pending(
            decision, offset, deadline, activated=not decision.deferred
        )
        heapq.heappush(self._deadlines, (deadline, offset, decision.event_id))

    def on_reward(self, reward: Reward, offset: int) -> DeadLetter | None:
        """Attach a reward; returns a dead letter if it cannot be joined."""
        pending = self._pending.get(reward.event_id)
        if pending is None:
            return DeadLetter(
                "unknown-event", reward.event_id, reward.timestamp, {"value": reward.value}, offset
            )
        if reward.timestamp > pending.deadline:
            return DeadLetter(
                "expired-event", reward.event_id, reward.timestamp, {"value": reward.value}, offset
            )
        pending.rewards.append(reward)
        return None

    def on_activation(self, activation: Activation, offset: int) -> DeadLetter | None:
        pending = self._pending.get(activation.event_id)
        if pending is None:
            return DeadLetter(
                "unknown-event",
                activation.event_id,
                activation.timestamp,
                {"activation": True},
                offset,
            )
        if activation.timestamp > pending.deadline:
            return DeadLetter(
                "expired-event",
                activation.event_id,
                activation.timestamp,
                {"activation": True},
                offset,
            )
        if not pending.activated:
            pending.activated = True
            pending.deadline = activation.timestamp + self.exp_unit
            heapq.heappush(self._deadlines, (pending.deadline, pending.offset, activation.event_id))
        return None

    def close_until(self, watermark: float) -> tuple[list[JoinedExample], list[DeadLetter]]:
        """Emit every window whose deadline is <= watermark, in deadline order."""
        joined: list[JoinedExample] = []
        letters: list[DeadLetter] = []
        while self._deadlines and self._deadlines[0][0] <= watermark:
            deadline, _, event_id = heapq.heappop(self._deadlines)
            pending = self._pending.get(event_id)
            if pending is None or pending.deadline != deadline:
                continue  # superseded by an activation that moved the deadline
            del self._pending[event_id]
            if not pending.activated:
                letters.append(
                    DeadLetter(
                        "not-activated",
                        event_id,
                        deadline,
                        {"rewards": len(pending.rewards)},
                        pending.offset,
                    )
                )
                continue
            if pending.rewards:
                value = aggregate(pending.rewards, self.aggregation)
            else:
                value = self.default_reward
            logged = pending.decision
            joined.append(
                JoinedExample(
                    decision=self._materialize(logged),
                    reward=value,
                    n_rewards=len(pending.rewards),
                    used_default=not pending.rewards,
                    joined_at=deadline,
                    body=logged.body if isinstance(logged, LoggedDecision) else None,
                )
            )
        return joined, letters
