"""The join/learn/evaluate pipeline of a loop, in the one process that holds its lease.

The lease can be lost under a running pipeline (a PostgreSQL restart ends the session that
held the advisory lock, and a standby may take it); it is checked once a second, and a
lost lease stops this pipeline at once, so two never join and learn side by side.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

from recloop.core.clock import Clock
from recloop.core.errors import LeaseBusyError, LeaseLostError, StoreUnavailableError
from recloop.core.protocols import EventLog, JoinedStore, ModelStore
from recloop.core.stats import LoopStats
from recloop.evaluation.online import OnlineEvaluator
from recloop.learning.lease import Lease, acquire_lease
from recloop.learning.pipeline import Pipeline
from recloop.loop.candidates import CandidateRegistry
from recloop.settings import LoopSettings

log = logging.getLogger(__name__)


class PipelineHost:
    """``retakes``: a library loop (role "all") takes a lease it lost again when it is free
    and resumes from the committed offsets; a pipeline process reopens the loop instead."""

    def __init__(
        self,
        name: str,
        directory: Path,
        log_: EventLog,
        joined: JoinedStore,
        models: ModelStore,
        evaluator: OnlineEvaluator,
        candidates: CandidateRegistry,
        clock: Clock,
        stats: LoopStats,
        retakes: bool,
    ) -> None:
        self.name = name
        self.dir = directory
        self.log = log_
        self.joined = joined
        self.models = models
        self.evaluator = evaluator
        self.candidates = candidates
        self.clock = clock
        self.stats = stats
        self.retakes = retakes
        self.pipeline: Pipeline | None = None
        self._lease: Lease | None = None
        self._checked = -math.inf

    def open(self, settings: LoopSettings, wait_seconds: float) -> None:
        """Take the loop's pipeline lease and build the pipeline from the committed offsets
        (LeaseBusyError while another process holds it)."""
        self._lease = acquire_lease(settings.storage_url, self.dir, wait_seconds)
        self._checked = time.monotonic()
        self.candidates.sync()
        self.pipeline = Pipeline(
            settings, self.log, self.joined, self.models, self.evaluator, self.clock, self.stats
        )

    def check_lease(self, settings: LoopSettings) -> None:
        """Once a second: still held? (LeaseLostError when lost and taken by another.)"""
        now = time.monotonic()
        if self.retakes and self._lease is None and now - self._checked >= 1.0:
            self._checked = now
            try:
                self.open(settings, 0.0)
            except (LeaseBusyError, StoreUnavailableError):
                return
            log.warning("loop %s took its pipeline lease again", self.name)
            return
        if self._lease is None or now - self._checked < 1.0:
            return
        self._checked = now
        if self._lease.held():
            return
        self._lease.release()
        self._lease = None
        if self.pipeline is not None:
            self.pipeline.close()  # its memory may be behind what another pipeline committed
            self.pipeline = None
        self.stats.inc("pipeline_lease_lost_total")
        try:
            self.open(settings, 0.0)  # nobody took it: carry on from the committed offsets
        except (LeaseBusyError, StoreUnavailableError):
            raise LeaseLostError(
                f"loop {self.name!r} lost its pipeline lease; its pipeline stopped"
            ) from None
        log.warning("loop %s lost its pipeline lease and took it again", self.name)

    def reconfigure(self, settings: LoopSettings) -> None:
        if self.pipeline is not None:
            self.pipeline.reconfigure(settings)

    def close(self) -> None:
        if self.pipeline is not None:
            self.pipeline.close()

    def release(self) -> None:
        """Give the lease up (after the loop's stores are closed)."""
        if self._lease is not None:
            self._lease.release()
