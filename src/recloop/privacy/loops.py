"""Forgetting a user in one decision loop, and the loop's raw-log retention by age.

Both work on the loop's stores through an eraser of their own (``stores/forget_*.py``),
never through a running ``Loop``: the server, its pipeline process and the CLI may all
have the same stores open, and each change is one transaction that keeps offsets and
the joiner consistent (``stores/forget_common.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recloop.privacy.matching import UserMatcher
from recloop.settings import DAY, LoopSettings
from recloop.stores.factory import _postgres_url
from recloop.stores.forget_common import LogEraser


def open_eraser(settings: LoopSettings, loop_dir: Path) -> LogEraser:
    """The eraser of the loop's backend: PostgreSQL (keyed by the loop's name, as
    ``open_stores``) or the SQLite files under its directory."""
    url = _postgres_url(settings)
    if url:
        from recloop.stores.forget_postgres import PostgresLogEraser

        return PostgresLogEraser(url, loop_dir.name)
    from recloop.stores.forget_sqlite import SqliteLogEraser

    return SqliteLogEraser(loop_dir, settings.durability)


def forget_in_loop(
    settings: LoopSettings, loop_dir: Path, user_id: str, now: float
) -> dict[str, Any]:
    """Delete every decision whose context names the user (at ``settings.user_fields``),
    with its rewards, activations, dead letters and joined example; returns the counts
    and the backend. Idempotent: a second call finds nothing and returns zeros."""
    matcher = UserMatcher(user_id, settings.user_fields)
    eraser = open_eraser(settings, loop_dir)
    try:
        ids = eraser.find_events(matcher.needle(), matcher.matches_body)
        counts = eraser.forget(sorted(ids), now)  # with none: still clears old tombstones
    finally:
        eraser.close()
    return {"backend": eraser.backend, **counts.to_dict()}


def delete_raw_logs(settings: LoopSettings, loop_dir: Path, now: float) -> int:
    """``raw_log_retention_days``: delete the raw records older than that which the
    joiner is done with (at or before its committed replay position, so never a decision
    it could still join, nor a reward it could still attach). Returns how many."""
    days = settings.raw_log_retention_days
    if days < 0:
        return 0
    eraser = open_eraser(settings, loop_dir)
    try:
        return eraser.delete_raw(now - days * DAY)
    finally:
        eraser.close()
