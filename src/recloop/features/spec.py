"""What each raw item field is: named in the loop's feature spec, or inferred from values.

A team sends raw items ("title", "price", "tags", "published_at"); the spec says how each
field becomes features. Fields the spec does not name are inferred from the first values
seen, and the reason is kept, so ``recloop features explain`` can say why a field was read
as it was. Once a field has a kind it keeps it: the same field must always give the same
features, or what a model learned would silently stop applying.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from recloop.core.errors import InvalidInputError

FieldKind = Literal["text", "categorical", "numeric", "tags", "timestamp", "id"]
KINDS: tuple[str, ...] = get_args(FieldKind)

TIME_NAMES = ("_at", "_time", "_ts", "timestamp", "date")
"""Name endings that make a numeric field a timestamp (epoch seconds)."""
EPOCH_RANGE = (1e8, 1e11)
"""Numbers read as epoch seconds when inferring (1973 to 5138); milliseconds are larger."""
TEXT_MIN_WORDS = 4.0
"""Strings with at least this many words on average are text, shorter ones categories."""


@dataclass(frozen=True, slots=True)
class FieldPlan:
    """How one field is featurized, and why."""

    name: str
    kind: FieldKind
    source: Literal["spec", "inferred"]
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.name, "kind": self.kind, "source": self.source, "reason": self.reason}


def check_kind(name: str, kind: str) -> FieldKind:
    if kind not in KINDS:
        raise InvalidInputError(
            f"feature spec: field {name!r} has unknown kind {kind!r}; kinds: {list(KINDS)}"
        )
    return kind  # type: ignore[return-value]


def parse_timestamp(value: Any) -> float | None:
    """Epoch seconds from a number (seconds, or milliseconds when > 1e11) or an ISO-8601
    string; None when it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
        if not math.isfinite(number):
            return None
        return number / 1000.0 if number > EPOCH_RANGE[1] else number
    if isinstance(value, str) and len(value) >= 8 and value[:4].isdigit():
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        if parsed.tzinfo is None:  # a naive time is read as UTC, never the machine's zone
            return parsed.replace(tzinfo=UTC).timestamp()
        return parsed.timestamp()
    return None


def infer_kind(name: str, values: Sequence[Any]) -> tuple[FieldKind, str]:
    """The kind the values of a field suggest, and the reason, in words."""
    seen = [v for v in values if v is not None]
    if not seen:
        return "categorical", "no values yet: read as a category until the spec says more"
    lower = name.lower()
    if lower == "id" or lower.endswith("_id"):
        return "id", "named like an identifier: the item's id, not a feature"
    if all(isinstance(v, list | tuple) for v in seen):
        return "tags", "lists of values: a bag of tags"
    if any(isinstance(v, list | tuple) for v in seen) and all(
        isinstance(v, list | tuple | str) for v in seen
    ):
        return "tags", "lists and strings: a bag of tags ('a|b' strings split on '|')"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in seen):
        if lower.endswith(TIME_NAMES) and all(
            EPOCH_RANGE[0] <= float(v) <= EPOCH_RANGE[1] * 1000 for v in seen
        ):
            return "timestamp", "numbers named like a time, in the epoch range"
        return "numeric", f"numbers ({len(seen)} seen)"
    if all(isinstance(v, bool) for v in seen):
        return "categorical", "true/false values"
    if all(isinstance(v, str) for v in seen):
        if all(parse_timestamp(v) is not None for v in seen):
            return "timestamp", "ISO-8601 dates and times"
        if sum("|" in v for v in seen) * 2 >= len(seen):
            return "tags", "'|'-separated values (a CSV cell's tags)"
        words = sum(len(v.split()) for v in seen) / len(seen)
        if words >= TEXT_MIN_WORDS:
            return "text", f"free text ({words:.1f} words on average)"
        distinct = len(set(seen))
        return "categorical", f"short strings ({words:.1f} words, {distinct} distinct values)"
    return "categorical", "mixed value types: read as a category (name the kind in the spec)"


def plan_fields(
    spec: Mapping[str, str], items: Sequence[Mapping[str, Any]], known: Mapping[str, FieldPlan]
) -> dict[str, FieldPlan]:
    """Plans for every field in ``items``: the spec's kind, a kind fixed earlier, or one
    inferred now from these items' values."""
    plans = dict(known)
    for name, kind in spec.items():
        if name not in plans or plans[name].source != "spec":
            plans[name] = FieldPlan(name, check_kind(name, kind), "spec", "named in the spec")
    names: dict[str, None] = {}
    for item in items:
        names.update(dict.fromkeys(item))
    for name in names:
        if name not in plans:
            kind, reason = infer_kind(name, [item.get(name) for item in items])
            plans[name] = FieldPlan(name, kind, "inferred", reason)
    return plans
