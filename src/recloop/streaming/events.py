"""Behaviour events: what users did with items, the input of the stateful stream."""

from __future__ import annotations

import math
import sys
import uuid
from collections.abc import Mapping
from typing import Any

from recloop.core.errors import InvalidInputError
from recloop.core.types import BEHAVIOURS, NO_FEATURES, BehaviourEvent

__all__ = ["BEHAVIOURS", "BehaviourEvent", "parse_event"]


MAX_INT_ID = 2**53 - 1
"""The widest integer id: every JSON parser (JavaScript's, a double) keeps it exact."""


def parse_event(
    raw: Mapping[str, Any],
    *,
    now: float,
    max_future_seconds: float = 300.0,
    behaviours: tuple[str, ...] = BEHAVIOURS,
) -> BehaviourEvent:
    """Validate one event from JSON-like input. Missing timestamps take ``now``; ids may
    be strings or integers; an absent ``event_id`` gets a fresh UUID."""
    if not isinstance(raw, Mapping):
        raise InvalidInputError("an event must be a JSON object")
    ids: dict[str, str] = {}
    for key in ("user_id", "item_id"):
        value = raw.get(key)
        if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_INT_ID:
            value = int(value)  # 7.0 is the integer 7 to JSON Schema (and to JavaScript)
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            raise InvalidInputError(f"{key} is missing or not a string")
        if isinstance(value, int) and not -MAX_INT_ID <= value <= MAX_INT_ID:
            raise InvalidInputError(
                f"{key}: an integer id must lie within ±(2^53 - 1); send a string"
            )
        ids[key] = str(value)
    behaviour = raw.get("behaviour", raw.get("behavior"))
    if behaviour not in behaviours:
        raise InvalidInputError(f"unknown behaviour {behaviour!r}; known: {', '.join(behaviours)}")
    ts = raw.get("timestamp", now)
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        raise InvalidInputError("timestamp must be a finite number (seconds since the epoch)")
    if ts > now + max_future_seconds:
        raise InvalidInputError(
            f"timestamp {ts} is {ts - now:.0f} s in the future (limit {max_future_seconds:.0f} s)"
        )
    event_id = raw.get("event_id")
    if event_id is None:
        event_id = uuid.uuid4().hex
    elif not isinstance(event_id, str) or not event_id:
        raise InvalidInputError("event_id must be a non-empty string")
    features = raw.get("features")
    if features is None:
        features = {}
    elif not isinstance(features, Mapping):  # [], "" or 0 were taken as "no features"
        raise InvalidInputError("features must be an object")
    for key, value in features.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInputError(f"feature {key!r} is not a finite number")
    return BehaviourEvent(
        ids["user_id"],
        sys.intern(ids["item_id"]),
        sys.intern(str(behaviour)),
        float(ts),
        event_id,
        dict(features) if features else NO_FEATURES,
    )
