"""The records that flow through a loop: actions, decisions, rewards, joined examples."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: A feature value: a string (categorical), a number, a bool, a list of strings (a bag),
#: or a nested mapping of those (a namespace).
FeatureValue = Any
Features = Mapping[str, FeatureValue]
Context = Mapping[str, FeatureValue]


@dataclass(frozen=True, slots=True)
class Action:
    """One candidate the policy may choose; `features` describe it (action-dependent features)."""

    id: str
    features: Features = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    """What was decided, logged at the decision point with the true probability of `chosen`."""

    event_id: str
    loop: str
    timestamp: float
    context: Context
    actions: tuple[Action, ...]
    ranking: tuple[str, ...]
    """Action ids, the chosen (reward) action first, then the others by policy score."""
    probabilities: tuple[float, ...]
    """Probability of each action in `ranking` under the exploration distribution."""
    chosen: str
    chosen_index: int
    """Index of the chosen action in `actions`."""
    probability: float
    model_version: str
    policy: str
    deferred: bool = False
    excluded: tuple[str, ...] = ()

    def probability_of(self, action_id: str) -> float:
        for aid, p in zip(self.ranking, self.probabilities, strict=True):
            if aid == action_id:
                return p
        return 0.0

    def action_probabilities(self) -> list[float]:
        """Probabilities aligned with `actions` (the order the caller sent them in)."""
        by_id = dict(zip(self.ranking, self.probabilities, strict=True))
        return [by_id.get(a.id, 0.0) for a in self.actions]


@dataclass(frozen=True, slots=True)
class LoggedDecision:
    """A decision as read back from the log: what the joiner needs, plus the encoded body.

    Keeping the body encoded until the window closes holds ~2 KB per pending decision
    instead of ~9 KB of Python objects, and skips decoding decisions nobody learns from.
    """

    event_id: str
    timestamp: float
    deferred: bool
    body: bytes


@dataclass(frozen=True, slots=True)
class Reward:
    """An outcome for an event; several may arrive and are aggregated by the loop's rule."""

    event_id: str
    value: float
    timestamp: float
    reward_id: str | None = None


@dataclass(frozen=True, slots=True)
class Activation:
    """Marks a deferred decision as actually shown, so it may be learned from."""

    event_id: str
    timestamp: float


@dataclass(frozen=True, slots=True)
class JoinedExample:
    """A decision and its aggregated reward, emitted when the experimental unit ends."""

    decision: Decision
    reward: float
    n_rewards: int
    used_default: bool
    joined_at: float
    seq: int = 0
    """Position in the joined stream (set by the store)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A reward or activation that could not be joined, kept with the reason."""

    reason: str
    """'unknown-event', 'expired-event', 'duplicate-reward' or 'not-activated'."""
    event_id: str
    timestamp: float
    payload: Mapping[str, Any]
    source_offset: int | None = None


def available_actions(
    actions: tuple[Action, ...] | list[Action], excluded: tuple[str, ...]
) -> list[Action]:
    """The actions a policy may choose from: all of them minus the excluded ones."""
    if not excluded:
        return list(actions)
    drop = set(excluded)
    return [a for a in actions if a.id not in drop]
