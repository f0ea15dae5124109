"""Checking a loop's agent parameters (``drn = {...}``, ``fusion = {...}`` in its
settings): they come from settings files and the settings API, so unknown names and wrong
types are input errors naming the parameter, before any network is built."""

from __future__ import annotations

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
