"""The behaviour stream's settings (TOML ``[stream]``)."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

from recloop.settings.loop import DAY, MAX_WINDOW_SECONDS, YEAR


class StreamSettings(BaseModel):
    """The behaviour stream: user state, triggers, recommendations (TOML ``[stream]``,
    environment ``RECLOOP_STREAM__FIELD``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    runner: Literal["embedded", "external"] = Field(
        "embedded",
        description="embedded: the server runs the stream (one process holds its lock); "
        "external: `recloop stream` runs it (embedded or --runner flink), the server only "
        "ingests and serves.",
    )
    last_n: int = Field(10, ge=1, le=10_000, description="Recent items kept per user.")
    session_gap_seconds: float = Field(1800.0, gt=0, le=MAX_WINDOW_SECONDS)
    allowed_lateness_seconds: float = Field(60.0, ge=0, le=MAX_WINDOW_SECONDS)
    ttl_seconds: float = Field(
        30 * DAY, gt=0, le=10 * YEAR, description="Forget users idle this long."
    )
    max_future_seconds: float = Field(
        300.0, ge=0, le=DAY, description="Refuse events further ahead."
    )
    min_events: int = Field(
        1, ge=1, le=1_000_000, description="Recommend once a user has this many events."
    )
    k: int = Field(10, ge=1, le=1000, description="Items per precomputed list.")
    candidates: int = Field(100, ge=1, le=100_000, description="Popular items the policy ranks.")
    popularity_half_life_seconds: float = Field(6 * 3600.0, gt=0, le=YEAR)
    policy: str = Field(
        "popularity",
        description="Ranks the candidates: popularity, a policy KIND[:JSON], or loop:NAME "
        "(the model that decision loop serves).",
    )
    stale_after_seconds: float = Field(
        DAY, gt=0, le=YEAR, description="Older lists are stale: the popular fallback is served."
    )
    max_batch_events: int = Field(10_000, ge=1, le=1_000_000)
    log_url: str | None = Field(
        None,
        description="nats://host:4222 to carry behaviour events over NATS JetStream between "
        "processes and machines; default: the embedded SQLite log.",
    )
    nats_stream: str = Field("RECLOOP_EVENTS", description="JetStream stream name.")
    recommendations_url: str | None = Field(
        None, description="redis://... to keep recommendations in Redis; default SQLite."
    )
    recommendations_prefix: str = Field(
        "recloop:recs:",
        min_length=1,
        max_length=200,
        description="Redis key prefix of the lists and the runner's board: several clusters "
        "(or tests) can share one Redis with a prefix each.",
    )
    snapshot_every_events: int = Field(
        200_000,
        le=1_000_000_000,
        ge=1,
        description="State snapshots bound recovery time only: the durable event log is "
        "replayed from the last snapshot's offset after a crash, so nothing is lost between.",
    )
    snapshot_every_seconds: float = Field(10.0, gt=0, le=DAY)
