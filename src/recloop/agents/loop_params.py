"""Checking a loop's agent parameters (``drn = {...}``, ``fusion = {...}`` in its
settings): they come from settings files and the settings API, so unknown names and wrong
types are input errors naming the parameter, before any network is built."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from recloop.core.errors import InvalidInputError


def check_params(section: str, params: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
    """Every name in ``params`` is one of ``defaults``, with a value of the default's type
    (an integer is a number; a boolean is neither)."""
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        known = sorted(defaults)
        raise InvalidInputError(f"{section} has no parameter(s) {unknown}; it has {known}")
    for name, value in params.items():
        _check_type(f"{section}.{name}", value, defaults[name])


MAX_WIDTH = 16_384
"""The largest hashing width or hidden layer a loop's agent may declare: a first layer of
16,384 x 1,024 float32 weights is 64 MB. A version's header is input too (model imports):
a declared size is checked before a network of that size is built."""
MAX_HIDDEN = 1_024
MAX_SAMPLES = 1_000_000
"""Replay memories and minibatches."""


def check_bounds(section: str, checks: Mapping[str, tuple[float, float, float]]) -> None:
    """Each ``name: (value, low, high)`` finite and within ``[low, high]``."""
    for name, (value, low, high) in checks.items():
        if not (math.isfinite(value) and low <= value <= high):
            raise InvalidInputError(f"{section}.{name} must be in [{low}, {high}], got {value}")


def _check_type(name: str, value: object, default: object) -> None:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise InvalidInputError(f"{name} must be true or false, got {value!r}")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInputError(f"{name} must be an integer, got {value!r}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInputError(f"{name} must be a number, got {value!r}")
    elif isinstance(default, str) and not isinstance(value, str):
        raise InvalidInputError(f"{name} must be a string, got {value!r}")
