"""The records that flow through a loop: actions, decisions, rewards, joined examples."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
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


class GeneratedFeatures(dict[str, FeatureValue]):
    """Features the feature generator made from raw item fields: checked when they were
    made, so a rank call does not check them again (a catalogue lookup stays cheap).

    ``key`` names the content they were made from (content hash and age buckets), so the
    VW text of an item can be cached by it; "" when unknown."""

    __slots__ = ("key",)

    def __init__(self, features: Mapping[str, FeatureValue] | None = None, key: str = "") -> None:
        super().__init__(features or {})
        self.key = key


@dataclass(frozen=True, slots=True)
class ItemRecord:
    """A catalogue item: its raw fields, their content hash and the features made from them."""

    item_id: str
    content_hash: str
    fields: Mapping[str, Any]
    features: Mapping[str, Any]
    times: tuple[tuple[str, float], ...] = ()
    """Timestamp fields (name, epoch seconds): their age is added at decision time."""
    seq: int = 0
    """Position in the catalogue's change feed (set by the store)."""
    updated_at: float = 0.0
    deleted: bool = False


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
    exploration: Mapping[str, float | int | str] | None = None
    """What a policy that explores by itself drew besides ``probabilities``
    (``core.protocols.SelfExploringPolicy``), for its learner and for estimators over it:
    the score-fusion DDPG's served ``weight`` and its ``density`` under the noise; DRN's
    interleaving, the ``list`` the chosen action came from and the ``perturbation``. None for
    policies explored by the loop's explorer over their scores."""

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
    body: bytes | None = field(default=None, compare=False, repr=False)
    """The decision as the event log holds it, when the joiner read it from there: the
    joined store writes these bytes rather than encoding the decision again."""


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


NO_FEATURES: Mapping[str, Any] = MappingProxyType({})
"""Shared by every event without features (millions of users' pending events)."""

BEHAVIOURS: tuple[str, ...] = ("view", "click", "cart", "favourite", "buy", "custom")
"""Known behaviour names; ``custom`` carries an application-defined kind in its features."""


@dataclass(frozen=True, slots=True)
class BehaviourEvent:
    """``<user, item, behaviour, event time>``. ``event_id`` makes an event unique (the log
    refuses a second one) and breaks ties between events with the same timestamp, so the
    order of a user's events -- hence their state -- never depends on arrival order."""

    user_id: str
    item_id: str
    behaviour: str
    timestamp: float
    event_id: str
    features: Mapping[str, Any] = field(default_factory=lambda: NO_FEATURES)

    @property
    def order(self) -> tuple[float, str]:
        return (self.timestamp, self.event_id)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "user_id": self.user_id,
            "item_id": self.item_id,
            "behaviour": self.behaviour,
            "timestamp": self.timestamp,
            "event_id": self.event_id,
        }
        if self.features:
            out["features"] = dict(self.features)
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> BehaviourEvent:
        """The inverse of :meth:`to_dict` (trusted input: already validated once)."""
        features = raw.get("features")
        return cls(
            str(raw["user_id"]),
            sys.intern(str(raw["item_id"])),  # ids repeat across users: one copy each
            sys.intern(str(raw["behaviour"])),
            float(raw["timestamp"]),
            str(raw["event_id"]),
            dict(features) if features else NO_FEATURES,
        )


@dataclass(frozen=True, slots=True)
class Recommendation:
    user_id: str
    items: tuple[str, ...]
    scores: tuple[float, ...]
    state_version: int
    """The user state version that produced it (0 for the popular fallback)."""
    event_time: float
    """Event time of the newest event behind it (the end-to-end lag is measured from it)."""
    policy: str
    source: str = "state"
    """``state`` (from the user's fresh state) or ``popular`` (the fallback)."""
    excluded: tuple[str, ...] = ()
    """Items left out because the user consumed them (a short list is topped up at serve
    time from the popular list, minus these)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "items": list(self.items),
            "scores": list(self.scores),
            "state_version": self.state_version,
            "event_time": self.event_time,
            "policy": self.policy,
            "source": self.source,
            "excluded": list(self.excluded),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Recommendation:
        return cls(
            str(raw["user_id"]),
            tuple(str(i) for i in raw["items"]),
            tuple(float(s) for s in raw["scores"]),
            int(raw["state_version"]),
            float(raw["event_time"]),
            str(raw["policy"]),
            str(raw.get("source", "state")),
            tuple(str(i) for i in raw.get("excluded", ())),
        )


POPULAR_KEY = "*popular*"
"""The key of the popularity list beside the users' lists in a recommendation store: a
user id no one may have (behaviour events naming it are refused)."""

APPRENTICE = "apprentice-baseline"
"""The policy label of decisions made in apprentice mode (the baseline chosen)."""
