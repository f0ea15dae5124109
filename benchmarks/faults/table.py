"""The fault table: one row per (layout, fault), what the load held and what was found."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from benchmarks.faults.matrix import Row

HEADERS = [
    "layout",
    "fault",
    "load",
    "acked",
    "found",
    "missing",
    "dup",
    "joined",
    "learned",
    "stream",
    "statuses seen",
    "stall s",
    "ready s",
    "ok",
    "note",
]


def _yes(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "NO")


def cells(row: Row) -> list[str]:
    if not row.applies:
        return [row.layout, row.fault, "n/a", *[""] * 11, f"n/a: {row.reason}"]
    statuses = " ".join(f"{k}:{v}" for k, v in row.statuses.items())
    return [
        row.layout,
        row.fault,
        f"{row.requests_per_s:g}/s x {row.seconds:g}s",
        str(row.acknowledged),
        str(row.found),
        str(row.missing),
        str(row.duplicated),
        _yes(row.joined_ok),
        _yes(row.learned_ok),
        _yes(row.stream_ok),
        statuses + (f" (unclean 5xx: {row.unclean_5xx})" if row.unclean_5xx else ""),
        f"{row.longest_stall_s:g}",
        "never" if row.ready_after_s is None else f"{row.ready_after_s:g}",
        "yes" if row.ok else "NO",
        "; ".join([row.note, *row.problems]).strip("; "),
    ]


def markdown(rows: Sequence[Row]) -> str:
    """The table as Markdown (for a report or an issue)."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def print_rows(rows: Sequence[Row]) -> None:
    print("\nFault matrix (acked = acknowledged records: decisions, rewards, behaviour events)")
    print(markdown(rows))
    sys.stdout.flush()
