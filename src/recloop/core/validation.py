"""Input checks shared by the library and the web API, so both reject the same things."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from itertools import repeat
from typing import Any

from recloop.core.errors import InvalidInputError
from recloop.core.types import Action, GeneratedFeatures

MAX_NESTING = 3
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
"""Integers are logged as JSON by orjson, which stops at 64 bits: a wider one was a 500."""


def _all_finite_numbers(features: Mapping[str, Any]) -> bool:
    """Fast path for the common all-numeric feature map: one C-level sum instead of a
    Python loop. False means "look closer", not "invalid"."""
    try:
        total = math.fsum(features.values())
    except (TypeError, OverflowError):
        return False
    if total - total != 0:  # some value is NaN or infinite
        return False
    if max(features.values(), default=0) > INT_MAX or min(features.values(), default=0) < INT_MIN:
        return False  # a huge float is fine, a huge int is not: the slow path tells which
    # names: all non-empty strings (map + isinstance runs in C, a generator expression in
    # Python: README, "Measurements behind the code")
    return "" not in features and all(map(isinstance, features, repeat(str)))


def check_features(features: Mapping[str, Any], where: str, depth: int = 0) -> None:
    """Reject non-finite numbers and values a feature generator cannot encode."""
    if type(features) is GeneratedFeatures:  # made (and checked) by the feature generator
        return
    if type(features) is not dict and not isinstance(features, Mapping):
        raise InvalidInputError(f"{where} must be an object, got {type(features).__name__}")
    if _all_finite_numbers(features):
        return
    for key, value in features.items():
        kind = type(value)
        if kind is str or kind is bool or value is None:
            if type(key) is not str or not key:
                raise InvalidInputError(f"{where}: feature names must be non-empty strings")
            continue
        if kind is float or kind is int:
            if type(key) is not str or not key:
                raise InvalidInputError(f"{where}: feature names must be non-empty strings")
            if value - value != 0:  # NaN and +-inf; cheaper than math.isfinite for ints too
                raise InvalidInputError(f"{where}.{key} is not a finite number ({value!r})")
            if kind is int and not INT_MIN <= value <= INT_MAX:
                raise InvalidInputError(f"{where}.{key}: integers must fit in 64 bits")
            continue
        _check_other(key, value, where, depth)


def _check_other(key: object, value: object, where: str, depth: int) -> None:
    if not isinstance(key, str) or not key:
        raise InvalidInputError(f"{where}: feature names must be non-empty strings")
    path = f"{where}.{key}"
    if isinstance(value, bool | str):
        return
    if isinstance(value, int | float):
        _check_number(value, path)
        return
    if isinstance(value, Mapping):
        if depth >= MAX_NESTING:
            raise InvalidInputError(f"{path} is nested more than {MAX_NESTING} levels deep")
        check_features(value, path, depth + 1)
        return
    if isinstance(value, list | tuple):
        _check_flat_list(value, path)
        return
    raise InvalidInputError(f"{path} has unsupported type {type(value).__name__}")


def _check_number(value: int | float, path: str) -> None:
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise InvalidInputError(f"{path}: integers must fit in 64 bits")
    elif not math.isfinite(value):
        raise InvalidInputError(f"{path} is not a finite number ({value!r})")


def _check_flat_list(value: Sequence[object], path: str) -> None:
    for item in value:
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise InvalidInputError(f"{path} lists must hold strings or numbers")
        if not isinstance(item, str):
            _check_number(item, path)


def check_item_fields(fields: Mapping[str, Any], where: str) -> None:
    """An item's raw fields: flat values (text, numbers, booleans, null) and flat lists of
    strings or numbers (tags). Checked before anything encodes them: a list nested 250
    deep was a RecursionError, a 70-digit integer an OverflowError (both 500s)."""
    for name, value in fields.items():
        if type(name) is not str or not name:
            raise InvalidInputError(f"{where}: field names must be non-empty strings")
        path = f"{where}.{name}"
        if value is None or isinstance(value, str | bool):
            continue
        if isinstance(value, int | float):
            _check_number(value, path)
        elif isinstance(value, list | tuple):
            _check_flat_list(value, path)
        elif isinstance(value, Mapping):
            raise InvalidInputError(
                f"{path}: raw fields are flat values; ready-made nested features go in 'features'"
            )
        else:
            raise InvalidInputError(f"{path} has unsupported type {type(value).__name__}")


def check_actions(actions: Sequence[Action], excluded: Iterable[str]) -> None:
    if not actions:
        raise InvalidInputError("actions must not be empty")
    seen: set[str] = set()
    for i, action in enumerate(actions):
        if not action.id:
            raise InvalidInputError(f"actions[{i}].id must be a non-empty string")
        if action.id in seen:
            raise InvalidInputError(f"duplicate action id {action.id!r}")
        seen.add(action.id)
        check_features(action.features, f"actions[{i}].features")
    excluded_set = set(excluded)
    unknown = excluded_set - seen
    if unknown:
        raise InvalidInputError(f"excluded_actions names unknown actions: {sorted(unknown)}")
    if excluded_set == seen:
        raise InvalidInputError("every action is excluded: nothing left to choose")


def check_event_id(event_id: str) -> None:
    if not event_id or len(event_id) > 256 or not event_id.isprintable():
        raise InvalidInputError("event_id must be 1-256 printable characters")


def check_reward_value(value: object, low: float = -math.inf, high: float = math.inf) -> float:
    """The reward as a float, if it is a number in ``[low, high]`` (the loop's range).

    Compared before converting: an integer beyond a float's range (``10**400``) is refused
    like any other out-of-range value instead of raising OverflowError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"reward value must be a number, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInputError(f"reward value must be finite, got {value!r}")
    if not low <= value <= high:
        shown = f"{value:.6g}" if isinstance(value, float) or abs(value) < 10**15 else "huge"
        raise InvalidInputError(
            f"reward value {shown} is outside the loop's reward range [{low:g}, {high:g}] "
            "(settings reward_min, reward_max)"
        )
    return float(value)


def to_action(raw: object, index: int) -> Action:
    """Accept Action objects, {"id": ..., "features": {...}} mappings or bare id strings."""
    if type(raw) is dict:  # the common case first: isinstance(x, Mapping) is slow
        action_id = raw.get("id")
        if type(action_id) is not str:
            raise InvalidInputError(f"actions[{index}].id must be a string")
        return Action(action_id, raw.get("features") or {})
    if isinstance(raw, Action):
        return raw
    if isinstance(raw, str):
        return Action(raw)
    if isinstance(raw, Mapping):
        return to_action(dict(raw), index)
    raise InvalidInputError(f"actions[{index}] must be an object with an id")
