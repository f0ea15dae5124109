"""The imperative shell around the joiner, learner and evaluators of one loop.

Each consumer keeps its own offset:

* the joiner commits ``joiner.read`` (every log record up to it has had its effect
  committed) and ``joiner.replay_from`` (the oldest still-pending decision) together with
  the joined examples and dead letters it produced, in one transaction;
* the learner's offset travels inside each model version's metadata, so a model and the
  examples it has learned can never disagree;
* evaluators keep theirs in memory and rebuild from the durable joined stream on start,
  a bounded number of examples per step, so joining and learning go on meanwhile.

A crash anywhere therefore neither loses nor double-counts an example.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from recloop.core.clock import Clock
from recloop.core.errors import ModelRejectedError
from recloop.core.protocols import EventLog, JoinedStore, LogRecord, ModelStore
from recloop.core.stats import LoopStats
from recloop.core.types import (
    Activation,
    DeadLetter,
    Decision,
    JoinedExample,
    LoggedDecision,
    Reward,
    available_actions,
)
from recloop.evaluation.online import OnlineEvaluator
from recloop.learning.learners import OnlineLearner, learner_kind, new_learner, resume_learner
from recloop.log.codec import decode_decision
from recloop.log.joiner import Aggregation, DecisionLike, Joiner
from recloop.settings import LoopSettings

APPRENTICE = "apprentice-baseline"
"""The policy label of decisions made in apprentice mode (the baseline chosen)."""

log = logging.getLogger(__name__)


def _decode(decision: DecisionLike) -> Decision:
    if isinstance(decision, LoggedDecision):
        return decode_decision(decision.body)
    assert isinstance(decision, Decision)
    return decision


READ_KEY = "joiner.read"
REPLAY_KEY = "joiner.replay_from"
BATCH = 2000
LEARN_CATCH_UP = 20_000  # examples per step when a consumer is behind (after a restart)
EVALUATE_CATCH_UP = 5_000
MAINTENANCE_SECONDS = 1.0


class Pipeline:
    """Joiner -> joined store -> learner (-> model store) and evaluators, one step at a time."""

    def __init__(
        self,
        settings: LoopSettings,
        event_log: EventLog,
        joined: JoinedStore,
        models: ModelStore,
        evaluator: OnlineEvaluator,
        clock: Clock,
        stats: LoopStats,
    ) -> None:
        self.settings = settings
        self.log = event_log
        self.joined = joined
        self.models = models
        self.evaluator = evaluator
        self.clock = clock
        self.stats = stats
        self.joiner = Joiner(
            settings.exp_unit_seconds,
            settings.default_reward,
            settings.reward_aggregation,
            materialize=_decode,
        )
        self.read_offset = 0
        self.learner: OnlineLearner | None = None
        self.learner_offset = 0
        self._since_checkpoint = 0
        self._last_checkpoint = clock.now()
        self._seen_reset: str | None = None
        """The newest reset version this pipeline has taken up (``Loop.reset_model``)."""
        self._last_maintenance = 0.0
        self._recover_joiner()
        self._recover_learner()

    def reconfigure(self, settings: LoopSettings) -> None:
        """New run-time settings: the joiner's window (for decisions read from now on),
        default reward and aggregation, the checkpoint cadence; new VW arguments start a
        new learner from the beginning of the joined history."""
        relearn = (
            settings.learner == "vw" and settings.full_vw_args() != self.settings.full_vw_args()
        )
        self.settings = settings
        if relearn:
            if self.learner is not None:
                self.learner.close()
            self.learner, self.learner_offset = new_learner(settings), 0
            self._since_checkpoint = 0
            log.info("new VW arguments %r: the learner starts afresh", settings.full_vw_args())
        self.joiner.exp_unit = settings.exp_unit_seconds
        self.joiner.default_reward = settings.default_reward
        self.joiner.aggregation = Aggregation(settings.reward_aggregation)

    # -- joiner ---------------------------------------------------------------------------
    def _recover_joiner(self) -> None:
        committed = self.joined.offset(READ_KEY)
        after = self.joined.offset(REPLAY_KEY)
        position = after
        while position < committed:
            records = self.log.read(position, BATCH)
            if not records:
                break
            for rec in records:
                if rec.offset > committed:  # not yet processed: join_step feeds it normally
                    break
                self._replay(rec)
            position = records[-1].offset
        self.read_offset = committed
        self._committed_offsets = (committed, after)

    def _replay(self, rec: LogRecord) -> None:
        """Re-feed a record whose effects were committed: only rebuild pending windows."""
        event = rec.event
        if isinstance(event, LoggedDecision):
            if not self.joined.is_joined(event.event_id):
                self.joiner.on_decision(event, rec.offset)
        elif self.joiner.is_pending(event.event_id):
            self._feed(rec)

    def _feed(self, rec: LogRecord) -> DeadLetter | None:
        event = rec.event
        if isinstance(event, LoggedDecision):
            self.joiner.on_decision(event, rec.offset)
            return None
        if isinstance(event, Reward):
            return self.joiner.on_reward(event, rec.offset)
        assert isinstance(event, Activation)
        return self.joiner.on_activation(event, rec.offset)

    def join_step(self, now: float) -> list[JoinedExample]:
        """Read new log records, close due windows, commit. Returns the examples joined."""
        letters: list[DeadLetter] = []
        while True:
            records = self.log.read(self.read_offset, BATCH)
            for rec in records:
                letter = self._feed(rec)
                if letter is not None:
                    letters.append(letter)
            if records:
                self.read_offset = records[-1].offset
            if len(records) < BATCH:
                break
        joined, closed_letters = self.joiner.close_until(now - self.settings.join_grace_seconds)
        letters.extend(closed_letters)
        low = self.joiner.low_watermark()
        replay_from = self.read_offset if low is None else low - 1
        committed: list[JoinedExample] = []
        offsets = (self.read_offset, replay_from)
        if joined or letters or offsets != self._committed_offsets:
            committed = self.joined.commit_joined(
                joined, {READ_KEY: self.read_offset, REPLAY_KEY: replay_from}, letters
            )
            self._committed_offsets = offsets
        for ex in committed:
            self.stats.inc("joins_total")
            if ex.used_default:
                self.stats.inc("joins_default_reward_total")
        for letter in letters:
            self.stats.inc(f"dead_letters_total:{letter.reason}")
        self.stats.set("joiner_pending", len(self.joiner))
        joins = self.stats.get("joins_total")
        if joins:
            self.stats.set(
                "default_reward_rate", self.stats.get("joins_default_reward_total") / joins
            )
        return committed

    # -- learner --------------------------------------------------------------------------
    def _recover_learner(self) -> None:
        # the newest version *this kind of learner* wrote: others (a deep RL agent put by
        # `recloop train`, another learner's) are served, never resumed from
        kind = learner_kind(self.settings)
        args = self.settings.full_vw_args() if self.settings.learner == "vw" else None

        def resumable(meta: Mapping[str, Any]) -> bool:
            if "learner_offset" not in meta or meta.get("kind", "vw-cb") != kind:
                return False
            return args is None or meta.get("args", args) == args  # VW: the same arguments

        newest = next((v for v in self.models.versions(10_000) if resumable(v.meta)), None)
        self.learner_offset = 0
        if newest is None:
            self.learner = new_learner(self.settings)
            return
        _, blob = self.models.get(newest.version)
        try:
            self.learner = resume_learner(self.settings, blob)
        except ModelRejectedError as exc:  # e.g. a DRN whose shape the settings changed
            log.warning("learner starts afresh, not from version %s: %s", newest.version, exc)
            self.learner = new_learner(self.settings)
            return
        self.learner_offset = int(newest.meta["learner_offset"])
        self.learner.examples_learned = int(newest.meta.get("examples_learned", 0))

    def _unseen(
        self, offset: int, fresh: list[JoinedExample], limit: int
    ) -> Iterator[JoinedExample]:
        """Joined examples after `offset`: straight from memory when the consumer is caught
        up (the common case), else from the durable store (after a restart or a failure),
        at most `limit` per step so a long catch-up never stalls joining."""
        if fresh and fresh[0].seq == offset + 1:
            yield from fresh
            return
        while limit > 0:
            batch = self.joined.read(offset, min(BATCH, limit))
            yield from batch
            if len(batch) < min(BATCH, limit):
                return
            limit -= len(batch)
            offset = batch[-1].seq

    def _take_up_reset(self) -> None:
        """A model reset (by any process of the loop) stored a fresh learner version marked
        ``reset``: continue from it, and from its offset (the history is not relearned)."""
        newest = self.models.newest()
        if newest is None or not newest.meta.get("reset") or newest.version == self._seen_reset:
            return
        self._seen_reset = newest.version
        if newest.meta.get("kind") != learner_kind(self.settings):
            return
        _, blob = self.models.get(newest.version)
        learner = resume_learner(self.settings, blob)
        if self.learner is not None:
            self.learner.close()
        self.learner = learner
        self.learner_offset = int(newest.meta["learner_offset"])
        self._since_checkpoint = 0
        log.info("model reset: learning afresh from offset %s", self.learner_offset)

    def learn_step(self, now: float, fresh: list[JoinedExample] | None = None) -> int:
        """Learn what is new; checkpoint (once) when enough examples or time have passed."""
        self._take_up_reset()
        assert self.learner is not None
        learned = 0
        for ex in self._unseen(self.learner_offset, fresh or [], LEARN_CATCH_UP):
            if ex.decision.policy == APPRENTICE:
                if self.settings.learning_mode == "logging":
                    self.learner_offset = ex.seq  # logged, not learned from
                    continue
                self._imitation(ex)
            self.learner.learn_one(ex)
            self.learner_offset = ex.seq
            learned += 1
        self._since_checkpoint += learned
        if self._since_checkpoint and (
            self._since_checkpoint >= self.settings.checkpoint_every_examples
            or now - self._last_checkpoint >= self.settings.checkpoint_every_seconds
        ):
            self.checkpoint(now)
        self.stats.set("learner_lag_examples", self.joined.end_seq() - self.learner_offset)
        self.stats.set("learner_offset", self.learner_offset)
        return learned

    def _imitation(self, example: JoinedExample) -> None:
        """Apprentice mode, before learning from a baseline decision: would the learner have
        chosen the same? Counted with the rewards (see ``Loop.apprentice_report``)."""
        assert self.learner is not None
        d = example.decision
        acts = available_actions(d.actions, d.excluded)
        greedy = acts[int(np.argmax(self.learner.scores(d.context, acts)))].id
        r = example.reward
        self.stats.inc("apprentice_events_total")
        self.stats.inc("apprentice_rewards_total", r)
        self.stats.inc("apprentice_rewards_sq_total", r * r)
        if greedy == d.chosen:
            self.stats.inc("apprentice_imitated_total")
            self.stats.inc("apprentice_imitated_rewards_total", r)
            self.stats.inc("apprentice_imitated_rewards_sq_total", r * r)

    def checkpoint(self, now: float) -> str:
        """Store the learner's model as a new version, with the offset it has learned to."""
        assert self.learner is not None
        meta: dict[str, Any] = {
            "kind": self.learner.kind,
            "args": self.learner.args,
            "learner_offset": self.learner_offset,
            "examples_learned": self.learner.examples_learned,
        }
        version = self.models.put(self.learner.snapshot(), meta)
        self._since_checkpoint = 0
        self._last_checkpoint = now
        self.stats.inc("checkpoints_total")
        log.info("checkpoint model version %s at offset %s", version.version, self.learner_offset)
        return version.version

    # -- evaluators -----------------------------------------------------------------------
    def evaluate_step(self, fresh: list[JoinedExample] | None = None) -> int:
        done = 0
        for ex in self._unseen(self.evaluator.offset, fresh or [], EVALUATE_CATCH_UP):
            self.evaluator.update(ex)
            done += 1
        self.evaluator.catch_up(self.joined.read, EVALUATE_CATCH_UP)  # new candidates
        return done

    def step(self) -> int:
        now = self.clock.now()
        joined = self.join_step(now)
        self.learn_step(now, joined)
        self.evaluate_step(joined)
        if time.monotonic() - self._last_maintenance >= MAINTENANCE_SECONDS:
            self.log.maintenance()
            self._last_maintenance = time.monotonic()
        return len(joined)

    def close(self) -> None:
        if self.learner is not None:
            self.learner.close()
