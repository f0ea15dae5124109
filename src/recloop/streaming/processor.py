"""The stream's keyed logic end to end, still pure: event -> user state -> trigger ->
policy -> recommendation. Runners (embedded, Flink) feed it events and persist what it
returns; it does no I/O and reads time only from the events, so replaying the same events
gives the same states and recommendations.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from recloop.core.arrays import FloatArray
from recloop.core.protocols import Policy
from recloop.core.types import Action, Context, Recommendation
from recloop.streaming.events import BehaviourEvent
from recloop.streaming.popularity import DecayedPopularity
from recloop.streaming.state import Outcome, UserState, UserStateConfig, UserStream


@dataclass(frozen=True, slots=True)
class TriggerConfig:
    min_events: int = 1
    """Recommend once a user has at least this many events."""
    k: int = 10
    """Items per recommendation list."""
    candidates: int = 100
    """How many popular items the policy ranks (the candidate generator)."""


@dataclass(slots=True)
class PopularityPolicy:
    """Scores candidates by their time-decayed popularity at the context's ``now``."""

    popularity: DecayedPopularity
    name: str = "popularity"
    version: str = "stream"

    def scores(self, context: Context, actions: Sequence[Action]) -> FloatArray:
        now = float(context.get("now", 0.0))
        return np.array([self.popularity.score(a.id, now) for a in actions])


@dataclass(slots=True)
class Step:
    """What one event did: how it was placed, and the recommendation it triggered."""

    outcome: Outcome
    recommendation: Recommendation | None = None


@dataclass
class StreamProcessor:
    state_config: UserStateConfig = field(default_factory=UserStateConfig)
    trigger: TriggerConfig = field(default_factory=TriggerConfig)
    popularity: DecayedPopularity = field(default_factory=DecayedPopularity)
    policy: Policy | None = None
    """Any Policy; None ranks by popularity."""
    users: dict[str, UserStream] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.policy is None:
            self.policy = PopularityPolicy(self.popularity)
        # enough of a sorted head for any user: the candidates plus what they consumed
        need = self.trigger.candidates + self.state_config.last_n
        if self.popularity.keep_top < need:
            self.popularity.keep_top = need
            self.popularity.rebuild_head()

    def process(self, event: BehaviourEvent) -> Step:
        stream = self.users.get(event.user_id)
        if stream is None:
            stream = self.users[event.user_id] = UserStream.new(event.user_id)
        outcome = stream.add(event, self.state_config)
        if outcome != "applied":
            return Step(outcome)
        return Step(outcome, self.after_update(stream.state, event))

    def after_update(self, state: UserState, event: BehaviourEvent) -> Recommendation | None:
        """The global half of a step, after the keyed half placed ``event`` in the user's
        ``state``: popularity, trigger, policy. (The Flink job runs the keyed half keyed by
        user and this half downstream of it.)"""
        self.popularity.add(event.item_id, event.behaviour, event.timestamp)
        if state.events < self.trigger.min_events:
            return None
        return self.recommend(state, now=event.timestamp)

    def recommend(self, state: UserState, now: float) -> Recommendation:
        """Rank popular candidates minus what the user consumed with the policy, top k."""
        user_id = state.user_id
        consumed = state.consumed()
        assert self.policy is not None
        policy = self.policy
        if isinstance(policy, PopularityPolicy):  # ranking = the candidates' own order
            ranked = self.popularity.top(self.trigger.k, now, exclude=consumed)
        else:
            candidates = self.popularity.top(self.trigger.candidates, now, exclude=consumed)
            actions = [Action(item) for item, _ in candidates]
            context = {**state.features(now, self.state_config), "now": now}
            scores = np.asarray(policy.scores(context, actions), dtype=float)
            order = np.argsort(-scores, kind="stable")[: self.trigger.k]
            ranked = [(candidates[i][0], float(scores[i])) for i in order]
        return Recommendation(
            user_id,
            tuple(item for item, _ in ranked),
            tuple(score for _, score in ranked),
            state.version,
            state.last_seen if state.last_seen is not None else now,
            policy.name,
            excluded=tuple(sorted(consumed)),
        )

    def popular(self, now: float, k: int | None = None) -> Recommendation:
        top = self.popularity.top(k or self.trigger.k, now)
        return Recommendation(
            "*", tuple(i for i, _ in top), tuple(s for _, s in top), 0, now, "popularity",
            "popular",
        )  # fmt: skip

    def expire(self, now: float) -> list[str]:
        """Forget users idle longer than the TTL; returns who was forgotten."""
        gone = [u for u, s in self.users.items() if s.expired(now, self.state_config)]
        for user in gone:
            del self.users[user]
        return gone

    def states(self) -> Iterator[tuple[str, UserStream]]:
        return iter(self.users.items())
