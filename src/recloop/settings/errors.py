"""Settings problems as one readable error: each with its dotted name, unknown names with
the closest known ones.
"""

from __future__ import annotations

import difflib

from pydantic import (
    BaseModel,
    ValidationError,
)

from recloop.core.errors import InvalidInputError


def settings_error(
    exc: ValidationError, model: type[BaseModel], where: str = ""
) -> InvalidInputError:
    """A ValidationError as one readable InvalidInputError: each problem with its dotted
    name, and for an unknown name the closest known ones (``did you mean ...``)."""
    problems = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        name = where + ".".join(loc)
        if error["type"] == "extra_forbidden":
            known = _field_names(model, loc[:-1])
            close = difflib.get_close_matches(loc[-1], known, n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            problems.append(f"unknown setting {name!r}{hint}")
        else:
            problems.append(f"{name}: {error['msg']}")
    return InvalidInputError("invalid settings: " + "; ".join(problems))


def _field_names(model: type[BaseModel], path: list[str]) -> list[str]:
    """The field names of the (nested) settings model at ``path``; [] where it is no model."""
    current = model
    for part in path:
        field = current.model_fields.get(part)
        inner = field.annotation if field is not None else None
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return []
        current = inner
    return list(current.model_fields)
