"""Deciding: rank (score, explore, sample, log), reward and activate, and the window check
between them. All the serving hot path needs, and nothing else: the event log, the item
catalogue, the served policy, the settings in force."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from recloop.core.arrays import FloatArray
from recloop.core.clock import Clock
from recloop.core.errors import (
    DuplicateEventError,
    ExpiredEventError,
    InvalidInputError,
    UnknownEventError,
)
from recloop.core.protocols import Draw, EventLog, Explorer, self_exploring
from recloop.core.stats import LoopStats
from recloop.core.types import APPRENTICE, Action, Activation, DeadLetter, Decision, Reward
from recloop.core.validation import (
    check_actions,
    check_event_id,
    check_features,
    check_reward_value,
    to_action,
)
from recloop.exploration.explorers import make_explorer
from recloop.exploration.sampling import sample_index, uniform_from_event
from recloop.features.catalogue import ItemCatalogue
from recloop.loop.slot import PolicySlot
from recloop.settings import LoopSettings

ActionLike = Action | Mapping[str, Any] | str


class Decider:
    def __init__(
        self,
        name: str,
        log: EventLog,
        items: ItemCatalogue | None,
        slot: PolicySlot,
        settings: LoopSettings,
        clock: Clock,
        stats: LoopStats,
    ) -> None:
        self.name = name
        self.log = log
        self.items = items
        self.slot = slot
        self.clock = clock
        self.stats = stats
        self.configure(settings)

    def configure(self, settings: LoopSettings) -> None:
        """The settings in force (run-time changes included) and the explorer they name."""
        self.explorer: Explorer = make_explorer(
            settings.explorer, settings.epsilon, settings.softmax_lambda
        )
        self.settings = settings

    def _checked(
        self,
        actions: Sequence[ActionLike],
        context: Mapping[str, Any],
        event_id: str | None,
        excluded: tuple[str, ...],
    ) -> tuple[tuple[Action, ...], str]:
        try:
            if self.items is not None:
                acts = self.items.actions(actions, self.clock.now())
            else:
                acts = tuple(to_action(a, i) for i, a in enumerate(actions))
            check_features(context, "context")
            check_actions(acts, excluded)
            if event_id is None:
                event_id = uuid.uuid4().hex
            else:
                check_event_id(event_id)
        except InvalidInputError:
            self.stats.inc("rejected_total:invalid-input")
            raise
        return acts, event_id

    def rank(
        self,
        context: Mapping[str, Any],
        actions: Sequence[ActionLike],
        event_id: str | None = None,
        excluded_actions: Iterable[str] = (),
        defer_activation: bool = False,
    ) -> Decision:
        """Score, explore, sample and log a decision; returns only once it is durable.

        A used event id raises ``DuplicateEventError`` uncounted: whether that is a rejection
        or a retry answered from the log is the caller's to say (``Loop.rank`` counts it;
        the web routes count it only when they cannot replay the logged decision)."""
        excluded = tuple(excluded_actions)
        acts, event_id = self._checked(actions, context, event_id, excluded)
        drop = set(excluded)
        candidates = [a for a in acts if a.id not in drop] if drop else list(acts)
        served = self.slot.current
        label = served.label
        online = self.settings.learning_mode == "online"
        own = self_exploring(served.policy) if online else None
        drawn: Draw | None = None
        try:  # a policy that reads the candidates' features checks them (the fusion DDPG)
            if own is not None:  # it explores in its own action: its probabilities are exact
                u = uniform_from_event(event_id, self.settings.seed)
                drawn = own.draw(context, candidates, u)  # with its scores: one pass
                raw = drawn.scores
            else:
                raw = served.policy.scores(context, candidates)
        except InvalidInputError:
            self.stats.inc("rejected_total:invalid-input")
            raise
        scores: FloatArray = np.asarray(raw, dtype=float)
        if not np.isfinite(scores).all():  # a diverged model must not break exploration
            big = float(np.finfo(np.float64).max)
            scores = np.nan_to_num(scores, nan=-big, posinf=big, neginf=-big)
        if not online:
            # the application's baseline is shown: the first candidate, for certain
            probs = np.zeros(len(candidates))
            probs[0] = 1.0
            chosen, label = 0, APPRENTICE
        elif drawn is not None:
            probs, chosen = drawn.probabilities, drawn.chosen
        else:
            probs = self.explorer.distribution(scores)
            chosen = sample_index(probs, uniform_from_event(event_id, self.settings.seed))
        order: list[int] = np.argsort(-scores, kind="stable").tolist()
        order.remove(chosen)
        order.insert(0, chosen)  # the chosen (reward) action leads; the rest by score
        prob_list: list[float] = probs.tolist()
        chosen_id = candidates[chosen].id
        chosen_index = (
            chosen if not drop else next(i for i, a in enumerate(acts) if a.id == chosen_id)
        )
        # stamp and append under the log's lock: a record stamped before a reader's clock
        # reading is always visible to that reader (the joiner never misses it)
        with self.log.exclusive(across_processes=False):
            decision = Decision(
                event_id=event_id,
                loop=self.name,
                timestamp=self.clock.now(),
                context=context,
                actions=acts,
                ranking=(*(candidates[i].id for i in order), *excluded),
                probabilities=(*(prob_list[i] for i in order), *[0.0] * len(excluded)),
                chosen=chosen_id,
                chosen_index=chosen_index,
                probability=prob_list[chosen],
                model_version=served.policy.version,
                policy=label,
                deferred=defer_activation,
                excluded=excluded,
                exploration=None if drawn is None else drawn.record,
            )
            self.log.append_decision(decision)
        self.stats.inc("decisions_total")
        return decision

    def _check_window(self, event_id: str, kind: str) -> tuple[float, bool, float | None]:
        """Raise unless the event's window is open now; returns (now, deferred, activated).

        Call under ``log.exclusive()`` and stamp the record with the returned ``now``, so
        the check and the timestamp the joiner sees are the same instant.
        """
        info = self.log.decision_time(event_id)
        now = self.clock.now()
        if info is None:
            self.log.dead_letter(DeadLetter("unknown-event", event_id, now, {"kind": kind}))
            self.stats.inc("dead_letters_total:unknown-event")
            raise UnknownEventError(f"no decision with event id {event_id!r}")
        ts, deferred, activated = info
        start = activated if (deferred and activated is not None) else ts
        window = self.settings.exp_unit_seconds
        if now > start + window:
            self.log.dead_letter(DeadLetter("expired-event", event_id, now, {"kind": kind}))
            self.stats.inc("dead_letters_total:expired-event")
            raise ExpiredEventError(
                f"the reward window of event {event_id!r} closed "
                f"{now - start - window:.3f}s ago (exp_unit={window}s)"
            )
        return now, deferred, activated

    def reward(self, event_id: str, value: float, reward_id: str | None = None) -> None:
        """Log a reward for an event. Several may arrive; ``reward_id`` makes retries safe."""
        try:
            number = check_reward_value(value, self.settings.reward_min, self.settings.reward_max)
            check_event_id(event_id)
        except InvalidInputError:
            self.stats.inc("rejected_total:invalid-input")
            raise
        try:
            with self.log.exclusive():
                now, _, _ = self._check_window(event_id, "reward")
                self.log.append_reward(Reward(event_id, number, now, reward_id))
        except DuplicateEventError:
            self.stats.inc("rejected_total:duplicate-reward")
            raise DuplicateEventError(
                f"reward {reward_id!r} for event {event_id!r} was already received"
            ) from None
        self.stats.inc("rewards_total")

    def activate(self, event_id: str) -> None:
        """Mark a deferred decision as shown, so it is learned from. Idempotent."""
        check_event_id(event_id)
        with self.log.exclusive():
            now, deferred, activated = self._check_window(event_id, "activation")
            if not deferred or activated is not None:
                return
            try:
                self.log.append_activation(Activation(event_id, now))
            except DuplicateEventError:
                return
        self.stats.inc("activations_total")
