"""The stream as a service: ingest behaviour events, serve precomputed recommendations,
and (in one process) run the embedded runner. The web API, the CLI and in-process users
share it: ``Stream.open(data_dir)``.

Files live under ``DATA_DIR/_stream/``. Ingestion appends to the durable log from any
process; the runner, which holds ``runner.lock``, is the only writer of state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recloop.core.errors import InvalidInputError, PayloadTooLargeError
from recloop.core.protocols import BehaviourLog, RecommendationStore
from recloop.core.stats import LoopStats
from recloop.core.types import BehaviourEvent
from recloop.learning.lease import LeaseBusyError, PipelineLease
from recloop.settings import StreamSettings
from recloop.stores.sqlite_stream import (
    POPULAR_KEY,
    SqliteBehaviourLog,
    SqliteRecommendationStore,
    SqliteStreamState,
)
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


def open_behaviour_log(s: StreamSettings, stream_dir: Path) -> BehaviourLog:
    if s.log_url:
        if not s.log_url.startswith(("nats://", "tls://")):
            raise InvalidInputError(f"unsupported log_url {s.log_url!r}: use nats://...")
        from recloop.bus.nats_log import NatsBehaviourLog

        subject = "recloop.events." + s.nats_stream.lower()
        return NatsBehaviourLog(s.log_url, stream=s.nats_stream, subject=subject)
    return SqliteBehaviourLog(stream_dir / "events.db")


def open_recommendations(s: StreamSettings, stream_dir: Path) -> RecommendationStore:
    if s.recommendations_url:
        if not s.recommendations_url.startswith(("redis://", "rediss://", "unix://")):
            raise InvalidInputError(
                f"unsupported recommendations_url {s.recommendations_url!r}: use redis://..."
            )
        from recloop.stores.redis_stream import RedisRecommendationStore

        return RedisRecommendationStore(s.recommendations_url)
    return SqliteRecommendationStore(stream_dir / "recs.db")


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
            SqliteStreamState(self.dir / "state.db"),
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
            offsets = self.log.append(valid)
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
        found = self.recs.get(user_id)
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
        popular = self.recs.get_popular()
        self.stats.inc("stream_served_total:popular")
        if popular is None:
            return {"user_id": user_id, "items": [], "source": "popular", "stale": stale,
                    "state_version": None, "event_time": None, "written_at": None}  # fmt: skip
        rec, written_at = popular
        answer = self._answer(user_id, rec.items, rec.scores, "popular", rec, written_at, k)
        answer["stale"] = stale
        return answer

    def _top_up(
        self, items: list[str], scores: list[float], excluded: set[str], k: int
    ) -> tuple[list[str], list[float]]:
        popular = self.recs.get_popular()
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
            "state_version": rec.state_version if source == "state" else None,
            "event_time": rec.event_time,
            "written_at": written_at,
        }

    def status(self) -> dict[str, Any]:
        """Where the stream stands: what is logged, what the runner has processed (from
        its last snapshot when it runs in another process) and where it runs."""
        logged = self.log.last_offset()
        if self.runner is not None:
            processed, users, where = self.runner.offset, len(self.runner.processor.users), "here"
        else:
            store = SqliteStreamState(self.dir / "state.db")
            try:
                processed, snapshot, _ = store.load()
            finally:
                store.close()
            users, where = len(snapshot), "another process (figures as of its last snapshot)"
        return {
            "logged_offset": logged,
            "processed_offset": processed,
            "lag_events": max(logged - processed, 0),
            "users": users,
            "runner": where,
        }

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """Events the runner refused (too late) or could not process."""
        store = SqliteStreamState(self.dir / "state.db")
        try:
            return store.dead_letters(limit)
        finally:
            store.close()

    def metrics(self) -> LoopStats:
        """Counters for /metrics: ingestion (this process) plus the runner's figures when
        it runs here, published as the stream's remote figures."""
        if self.runner is not None:
            c = self.runner.counters
            counters = {
                "stream_state_updates_total": float(c.state_updates),
                "stream_triggers_total": float(c.triggers),
                "stream_recommendation_writes_total": float(c.recommendation_writes),
                "stream_dead_letters_total:too-late": float(c.late),
                "stream_dead_letters_total:processing-error": float(c.failed),
                "stream_expired_users_total": float(c.expired_users),
            }
            gauges = {
                "stream_runner_offset": float(self.runner.offset),
                "stream_users": float(len(self.runner.processor.users)),
            }
            if c.lag_seconds:
                lags = sorted(c.lag_seconds)
                gauges["stream_lag_seconds_p50"] = lags[len(lags) // 2]
                gauges["stream_lag_seconds_p99"] = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
            self.stats.set_remote(counters, gauges)
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
