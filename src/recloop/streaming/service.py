"""The stream as a service: ingest behaviour events, serve precomputed recommendations,
and (in one process) run the embedded runner. The web API, the CLI and in-process users
share it: ``Stream.open(data_dir)``.

Files live under ``DATA_DIR/_stream/``. Ingestion appends to the durable log from any
process; the runner, which holds ``runner.lock``, is the only writer of state. A server
whose runner is elsewhere (``stream.runner = "external"``) learns its progress and dead
letters from what the runner publishes in the recommendation store (``board``): that is
the one store they share, and it never opens (or creates) a ``state.db`` of its own.

When the recommendation store is out, a lookup answers the last popular list this process
read, marked ``degraded`` (a page with popular items beats an error page), or a 503
problem when it has none; for a second after a failure it does not try the store again,
so an unreachable Redis costs one timeout a second, not one per request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recloop.core.errors import InvalidInputError, PayloadTooLargeError, StoreUnavailableError
from recloop.core.stats import LoopStats
from recloop.core.types import POPULAR_KEY, BehaviourEvent, Recommendation
from recloop.learning.lease import LeaseBusyError, PipelineLease
from recloop.settings import StreamSettings
from recloop.stores.factory import (
    open_behaviour_log,
    open_recommendations,
    open_stream_state,
)
from recloop.streaming import board
from recloop.streaming.embedded import EmbeddedRunner
from recloop.streaming.events import parse_event
from recloop.streaming.policies import stream_policy
from recloop.streaming.popularity import DecayedPopularity
from recloop.streaming.processor import StreamProcessor, TriggerConfig
from recloop.streaming.state import UserStateConfig

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    accepted: int = 0
    duplicates: int = 0
    offsets: list[int] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    """``{"line": n, "error": "..."}`` for each refused entry (1-based line or position)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": len(self.errors),
            "errors": self.errors,
        }


def state_config(s: StreamSettings) -> UserStateConfig:
    return UserStateConfig(
        last_n=s.last_n,
        session_gap_seconds=s.session_gap_seconds,
        allowed_lateness_seconds=s.allowed_lateness_seconds,
        ttl_seconds=s.ttl_seconds,
    )


def make_processor(s: StreamSettings, data_dir: Path | None = None) -> StreamProcessor:
    return StreamProcessor(
        state_config(s),
        TriggerConfig(min_events=s.min_events, k=s.k, candidates=s.candidates),
        DecayedPopularity(half_life_seconds=s.popularity_half_life_seconds),
        stream_policy(s.policy, data_dir or Path(".")),
    )


class Stream:
    """Ingest, look up, and optionally run the stream of one data directory."""

    def __init__(
        self,
        settings: StreamSettings,
        data_dir: Path,
        *,
        run: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.dir = Path(data_dir) / "_stream"
        self.clock = clock
        self.stats = LoopStats()
        self.log = open_behaviour_log(settings, self.dir)
        self.recs = open_recommendations(settings, self.dir)
        self.remote_log = bool(settings.log_url)
        """The log is across the network: callers keep its waits off an event loop."""
        self.remote_recs = bool(settings.recommendations_url)
        self._popular: tuple[Recommendation, float] | None = None
        """The last popular list read: the answer while the store is out."""
        self._recs_down_until = 0.0
        self._recs_error: StoreUnavailableError | None = None
        """The store's last failure, while lookups are degraded."""
        self.runner: EmbeddedRunner | None = None
        self._lease: PipelineLease | None = None
        if run:
            self.start_runner()

    @classmethod
    def open(cls, data_dir: Path | str = "data", *, run: bool = True, **overrides: Any) -> Stream:
        return cls(StreamSettings(**overrides), Path(data_dir), run=run)

    def start_runner(self, wait_seconds: float = 0.0, background: bool = True) -> bool:
        """Run the embedded runner here if no other process does; True if it runs here."""
        if self.runner is not None:
            return True
        try:
            self._lease = PipelineLease.acquire(self.dir / "runner.lock", wait_seconds)
        except LeaseBusyError:
            log.info("the stream runner of %s runs in another process", self.dir)
            return False
        s = self.settings
        self.runner = EmbeddedRunner(
            make_processor(s, self.dir.parent),
            self.log,
            open_stream_state(self.dir),
            self.recs,
            snapshot_every_events=s.snapshot_every_events,
            snapshot_every_seconds=s.snapshot_every_seconds,
            clock=self.clock,
        )
        if background:
            self.runner.start()
        return True

    # -- events in ------------------------------------------------------------------------
    def ingest(
        self, raw_events: Sequence[Any], line_numbers: Sequence[int] | None = None
    ) -> IngestReport:
        """Validate each event; durably log the valid ones (one commit) and report the
        others by line. Nothing is logged for an oversized batch."""
        if len(raw_events) > self.settings.max_batch_events:
            self.stats.inc("stream_rejected_total:batch-too-large")
            raise PayloadTooLargeError(
                f"{len(raw_events)} events in one batch; the limit is "
                f"{self.settings.max_batch_events}"
            )
        now = self.clock()
        report = IngestReport()
        valid: list[BehaviourEvent] = []
        for i, raw in enumerate(raw_events):
            line = line_numbers[i] if line_numbers is not None else i + 1
            try:
                event = parse_event(
                    raw, now=now, max_future_seconds=self.settings.max_future_seconds
                )
                if event.user_id == POPULAR_KEY:
                    raise InvalidInputError(f"user_id {POPULAR_KEY!r} is reserved")
                valid.append(event)
            except InvalidInputError as exc:
                report.errors.append({"line": line, "error": str(exc)})
                self.stats.inc("stream_rejected_total:invalid-event")
        if valid:
            try:
                offsets = self.log.append(valid)
            except StoreUnavailableError:
                self.stats.inc("stream_rejected_total:log-unavailable", len(valid))
                raise
            if self.runner is not None:
                self.runner.wake()
            for offset in offsets:
                if offset is None:
                    report.duplicates += 1
                else:
                    report.accepted += 1
                    report.offsets.append(offset)
        self.stats.inc("stream_events_in_total", report.accepted)
        if report.duplicates:
            self.stats.inc("stream_duplicates_total", report.duplicates)
        return report

    # -- recommendations out --------------------------------------------------------------
    def recommendations(self, user_id: str, k: int | None = None) -> dict[str, Any]:
        """The user's precomputed list in one lookup, or the popular fallback when there is
        none or it is stale; ``source`` says which."""
        k = k or self.settings.k
        now = self.clock()
        try:
            self._recs_breaker()
            found = self.recs.get(user_id)
            self._recs_error = None
        except StoreUnavailableError as exc:
            return self._degraded(user_id, k, now, exc)
        stale = False
        if found is not None:
            rec, written_at = found
            stale = now - written_at > self.settings.stale_after_seconds
            if not stale:
                self.stats.inc("stream_served_total:state")
                items, scores = list(rec.items[:k]), list(rec.scores[:k])
                if len(items) < k:  # a short list (few candidates when it was made): top up
                    items, scores = self._top_up(items, scores, set(rec.excluded), k)
                return self._answer(user_id, items, scores, "state", rec, written_at, k)
        try:
            popular = self._read_popular()
        except StoreUnavailableError as exc:
            return self._degraded(user_id, k, now, exc)
        self.stats.inc("stream_served_total:popular")
        return self._popular_answer(user_id, popular, k, stale)

    def _read_popular(self) -> tuple[Recommendation, float] | None:
        popular = self.recs.get_popular()
        if popular is not None:
            self._popular = popular
        return popular or self._popular  # a store that restarted empty: the last one seen

    def _popular_answer(
        self, user_id: str, popular: tuple[Recommendation, float] | None, k: int, stale: bool
    ) -> dict[str, Any]:
        if popular is None:
            return {"user_id": user_id, "items": [], "source": "popular", "stale": stale,
                    "degraded": False, "state_version": None, "event_time": None,
                    "written_at": None}  # fmt: skip
        rec, written_at = popular
        answer = self._answer(user_id, rec.items, rec.scores, "popular", rec, written_at, k)
        answer["stale"] = stale
        return answer

    def _degraded(
        self, user_id: str, k: int, now: float, exc: StoreUnavailableError
    ) -> dict[str, Any]:
        """The store is out: the last popular list read, marked ``degraded``; a 503 if
        this process has none. The store is left alone for a second."""
        self.stats.inc(f"stream_store_errors_total:{exc.reason}")
        self._recs_failed(exc)
        if self._popular is None:
            self.stats.inc("stream_served_total:unavailable")
            raise exc
        self.stats.inc("stream_served_total:degraded")
        answer = self._popular_answer(user_id, self._popular, k, stale=False)
        answer["stale"] = now - self._popular[1] > self.settings.stale_after_seconds
        answer["degraded"] = True
        return answer

    def _recs_breaker(self) -> None:
        """Raise the store's last failure if it is under a second old: not again yet."""
        if self._recs_error is not None and time.monotonic() < self._recs_down_until:
            raise self._recs_error

    def _recs_failed(self, exc: StoreUnavailableError) -> None:
        if self._recs_error is None:
            log.warning("stream: recommendation lookups degraded: %s", exc)
        if exc is not self._recs_error:
            self._recs_error = exc
            self._recs_down_until = time.monotonic() + 1.0

    def _top_up(
        self, items: list[str], scores: list[float], excluded: set[str], k: int
    ) -> tuple[list[str], list[float]]:
        try:
            popular = self._read_popular()
        except StoreUnavailableError:  # the list itself was read: serve it short
            popular = self._popular
        if popular is not None:
            have = set(items) | excluded
            for item, score in zip(popular[0].items, popular[0].scores, strict=True):
                if len(items) >= k:
                    break
                if item not in have:
                    items.append(item)
                    scores.append(score)
        return items, scores

    @staticmethod
    def _answer(user_id: str, items: Sequence[str], scores: Sequence[float], source: str,
                rec: Any, written_at: float, k: int) -> dict[str, Any]:  # fmt: skip
        return {
            "user_id": user_id,
            "items": [{"id": i, "score": s} for i, s in list(zip(items, scores, strict=True))[:k]],
            "source": source,
            "stale": False,
            "degraded": False,
            "state_version": rec.state_version if source == "state" else None,
            "event_time": rec.event_time,
            "written_at": written_at,
        }

    def status(self) -> dict[str, Any]:
        """Where the stream stands: what is logged, what the runner has processed (its
        lists are in the store), where it runs and whether it is paused. A runner in
        another process is read from what it publishes (``runner_status_age_seconds``:
        how old that is; a runner that stopped shows as an age that grows). A log or
        store that is out shows as ``null`` figures and its reason, not as an error."""
        out: dict[str, Any] = {"logged_offset": None, "log": "ok", "recommendations": "ok"}
        try:
            out["logged_offset"] = self.log.last_offset()
        except StoreUnavailableError as exc:
            out["log"] = f"unavailable: {exc}"
        if self.runner is not None:
            runner: dict[str, Any] | None = self.runner.status()
            out["runner"] = "here"
        else:
            try:
                runner = board.read_status(self.recs)
            except StoreUnavailableError as exc:
                runner = None
                out["recommendations"] = f"unavailable: {exc}"
            out["runner"] = "another process" if runner else "another process (no status yet)"
        runner = runner or {}
        processed = runner.get("processed_offset")
        logged = out["logged_offset"]
        updated = runner.get("updated_at")
        out.update(
            processed_offset=processed,
            committed_offset=runner.get("committed_offset"),
            lag_events=None if logged is None or processed is None else max(logged - processed, 0),
            users=runner.get("users"),
            runner_paused=runner.get("paused"),
            runner_status_age_seconds=None if updated is None else self.clock() - updated,
        )
        return out

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest events the runner refused (too late) or could not process, as it
        committed them (all of them stay in the runner's ``state.db``)."""
        return board.read_dead_letters(self.recs, limit)

    def metrics(self) -> LoopStats:
        """Counters for /metrics: ingestion and lookups (this process) plus the runner's
        figures, from the runner itself when it runs here, else from what it publishes."""
        if self.runner is not None:
            runner: dict[str, Any] | None = self.runner.status()
        else:  # a scrape runs on the event loop: an unreachable store is tried once a second
            try:
                self._recs_breaker()
                runner = board.read_status(self.recs)
                self._recs_error = None
            except StoreUnavailableError as exc:
                self._recs_failed(exc)
                runner = None
        self.stats.set("stream_log_available", float(getattr(self.log, "connected", True)))
        self.stats.set("stream_recommendations_available", float(self._recs_error is None))
        if runner is not None:
            self.stats.set_remote(*board.runner_figures(runner, self.clock()))
        return self.stats

    def close(self) -> None:
        if self.runner is not None:
            self.runner.stop()
            self.runner.snapshots.close()
            self.runner = None
        if self._lease is not None:
            self._lease.release()
            self._lease = None
        self.log.close()
        self.recs.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
