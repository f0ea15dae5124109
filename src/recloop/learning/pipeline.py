"""The imperative shell around the joiner, learner and evaluators of one loop.

Each consumer keeps its own offset:

* the joiner commits ``joiner.read`` (every log record up to it has had its effect
  committed) and ``joiner.replay_from`` (the oldest still-pending decision) together with
  the joined examples and dead letters it produced, in one transaction. Its in-memory
  state (open windows, read position) runs ahead of that commit; when a step fails
  anywhere (a full disk, a busy or lost database) that state is thrown away and rebuilt
  from the committed offsets before the next step, so nothing read in the failed step is
  skipped;
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

from recloop.core.checksum import verified_model
from recloop.core.clock import Clock
from recloop.core.errors import ModelRejectedError
from recloop.core.protocols import EventLog, JoinedStore, LogRecord, ModelStore, OnlineLearner
from recloop.core.stats import LoopStats
from recloop.core.types import (
    APPRENTICE,
    Activation,
    DeadLetter,
    Decision,
    JoinedExample,
    LoggedDecision,
    Reward,
)
from recloop.evaluation.online import OnlineEvaluator
from recloop.kinds.models import learner_kind
from recloop.learning.learner_checks import diverged, record_imitation, reward_in_range
from recloop.log.codec import decode_decision
from recloop.log.joiner import Aggregation, DecisionLike, Joiner
from recloop.settings import LoopSettings

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
        self.joiner = self._new_joiner()
        self._joiner_stale = False
        """Set when a join step failed after moving the in-memory state past the commit."""
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
        kind = learner_kind(settings)
        relearn = (
            settings.learner == self.settings.learner
            and kind.fingerprint(settings) is not None
            and kind.fingerprint(settings) != kind.fingerprint(self.settings)
        )
        self.settings = settings
        if relearn:
            if self.learner is not None:
                self.learner.close()
            self.learner, self.learner_offset = kind.new(settings), 0
            self._since_checkpoint = 0
            log.info(
                "new learner settings %r: the learner starts afresh", kind.fingerprint(settings)
            )
        self.joiner.exp_unit = settings.exp_unit_seconds
        self.joiner.default_reward = settings.default_reward
        self.joiner.aggregation = Aggregation(settings.reward_aggregation)

    # -- joiner ---------------------------------------------------------------------------
    def _new_joiner(self) -> Joiner:
        return Joiner(
            self.settings.exp_unit_seconds,
            self.settings.default_reward,
            self.settings.reward_aggregation,
            materialize=_decode,
        )

    def _rebuild_joiner(self) -> None:
        """Forget the in-memory joiner and rebuild it from the committed offsets, as after a
        restart. Until this succeeds (the store may still be away) the joiner stays stale."""
        self.joiner = self._new_joiner()
        self._recover_joiner()
        self._joiner_stale = False
        self.stats.inc("joiner_rebuilds_total")
        log.warning("joiner rebuilt from committed offset %s", self.read_offset)

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
        """Read new log records, close due windows, commit. Returns the examples joined.

        Reading moves the read position and closing drops windows from memory before the
        commit; if anything fails before the commit has succeeded, the joiner is marked
        stale and rebuilt from what was committed (the error still propagates)."""
        if self._joiner_stale:
            self._rebuild_joiner()
        try:
            return self._join(now)
        except BaseException:
            self._joiner_stale = True
            raise

    def _join(self, now: float) -> list[JoinedExample]:
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
        self.learner, self.learner_offset = self._newest_resumable()

    def _newest_resumable(self) -> tuple[OnlineLearner, int]:
        """The learner of the newest version *this kind of learner* wrote that loads, with
        its offset; a new learner at 0 if none does. Versions of other kinds (a deep RL
        agent put by `recloop train`, another learner's) are served, never resumed from;
        a corrupt one is skipped for the one before it."""
        kind = learner_kind(self.settings)
        args = kind.fingerprint(self.settings)

        def resumable(meta: Mapping[str, Any]) -> bool:
            if "learner_offset" not in meta or meta.get("kind", "vw-cb") != kind.meta_kind:
                return False
            return args is None or meta.get("args", args) == args  # VW: the same arguments

        for version in self.models.versions(10_000):
            if not resumable(version.meta):
                continue
            try:
                _, blob = verified_model(self.models, version.version)
                learner = kind.resume(self.settings, blob)
            except ModelRejectedError as exc:  # corrupt, or a DRN whose shape changed
                log.warning("learner cannot resume from version %s: %s", version.version, exc)
                self.stats.inc("learner_resume_rejected_total")
                continue
            learner.examples_learned = int(version.meta.get("examples_learned", 0))
            return learner, int(version.meta["learner_offset"])
        return kind.new(self.settings), 0

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
        kind = learner_kind(self.settings)
        if newest.meta.get("kind") != kind.meta_kind:
            return
        _, blob = verified_model(self.models, newest.version)
        learner = kind.resume(self.settings, blob)
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
            if ex.decision.policy == APPRENTICE and self.settings.learning_mode == "logging":
                self.learner_offset = ex.seq  # logged, not learned from
                continue
            if not reward_in_range(ex, self.settings):
                self.stats.inc("learner_skipped_total:reward-out-of-range")
                self.learner_offset = ex.seq
                continue
            if ex.decision.policy == APPRENTICE:
                record_imitation(self.learner, ex, self.stats)
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
        # an agent's own counts, so that an operator sees, e.g., a fusion learner skipping
        # every decision (none carries a weight: its versions are not being served)
        agent_counts = getattr(self.learner, "stats", None)
        if isinstance(agent_counts, Mapping):
            for name, value in agent_counts.items():
                self.stats.set(f"learner_agent_{name}", float(value))
        return learned

    def _recover_from_divergence(self) -> None:
        """Back to the newest good version, skipping the examples since it (counted): they
        drove the weights to infinity and would do it again. Visible in the metrics
        (``learner_diverged_total``), never a silent stop of learning."""
        assert self.learner is not None
        self.learner.close()
        skipped_from = self.learner_offset
        self.learner, resumed_at = self._newest_resumable()
        self.stats.inc("learner_diverged_total")
        self.stats.inc("learner_skipped_total:diverged", skipped_from - resumed_at)
        self._since_checkpoint = 0
        log.error(
            "learner diverged (non-finite scores) at offset %s: back to the newest good "
            "version (offset %s); the examples between are not learned",
            skipped_from,
            resumed_at,
        )

    def checkpoint(self, now: float) -> str | None:
        """Store the learner's model as a new version, with the offset it has learned to;
        None when the learner diverged (it is rolled back instead, see above)."""
        assert self.learner is not None
        if diverged(self.learner):
            self._recover_from_divergence()
            self._last_checkpoint = now
            return None
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
