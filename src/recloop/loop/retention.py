"""Deleting what a loop may no longer keep: joined examples past their use or their
retention, the raw event log past ``raw_log_retention_days``, and a user's decisions on
request."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from recloop.core.clock import Clock
from recloop.core.protocols import EventLog, JoinedStore, ModelStore
from recloop.core.stats import LoopStats
from recloop.learning.pipeline import REPLAY_KEY
from recloop.settings import LoopSettings


class Retention:
    def __init__(
        self,
        directory: Path,
        log: EventLog,
        joined: JoinedStore,
        models: ModelStore,
        clock: Clock,
        stats: LoopStats,
    ) -> None:
        self.dir = directory
        self.log = log
        self.joined = joined
        self.models = models
        self.clock = clock
        self.stats = stats
        self._last = -math.inf

    def apply(self, settings: LoopSettings) -> None:
        """``log_retention_days`` (joined examples) and ``raw_log_retention_days`` (the
        event log, ``recloop.privacy.loops``): delete what has aged out, once a minute."""
        days = settings.log_retention_days
        now = self.clock.now()
        if now - self._last < 60.0:
            return
        if days < 0 and settings.raw_log_retention_days < 0:
            return
        self._last = now
        if days >= 0:
            self.delete_joined(older_than=days * 86400.0)
        if settings.raw_log_retention_days >= 0:
            from recloop.privacy.loops import delete_raw_logs

            self.stats.inc("raw_log_deleted_total", delete_raw_logs(settings, self.dir, now))

    def delete_joined(self, older_than: float | None = None) -> int:
        """Delete the joined examples (what evaluations, experiments and exports read) that
        nothing needs any more: learned by the newest learner checkpoint, and joined before
        the oldest decision the joiner could still replay after a crash (so none is ever
        joined twice); with ``older_than`` (seconds), only those joined that long ago (the
        pipeline applies ``log_retention_days`` so). The newest example stays (sequence
        numbers never go back). The event log, recloop's journal of acknowledged calls, is
        kept. Returns how many went."""
        learned = max(
            (int(v.meta["learner_offset"]) for v in self.models.versions(10_000)
             if "learner_offset" in v.meta),
            default=0,
        )  # fmt: skip
        replay_after = self.joined.offset(REPLAY_KEY)
        pending = self.log.read(replay_after, 1)
        bound = pending[0].event.timestamp if pending else math.inf
        if older_than is not None:
            bound = min(bound, self.clock.now() - older_than)
        deleted = self.joined.delete_joined(learned, bound)
        self.stats.inc("joined_deleted_total", deleted)
        return deleted

    def forget_user(self, settings: LoopSettings, user_id: str) -> dict[str, Any]:
        """Delete every decision of this loop whose context names the user (see
        ``recloop.privacy``), with its rewards and joined example; returns the counts."""
        from recloop.privacy.loops import forget_in_loop

        return forget_in_loop(settings, self.dir, user_id, self.clock.now())
