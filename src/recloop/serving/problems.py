"""RFC 9457 problem-details responses for recloop's errors: one mapping, used by the app's
exception handlers and by the decision fast path alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from recloop.core.errors import RecloopError, StoreUnavailableError
from recloop.core.stats import LoopStats

PROBLEM = "application/problem+json"


def problem(
    status: int,
    kind: str,
    title: str,
    detail: str,
    instance: str | None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://recloop.dev/problems/{kind}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(
        jsonable_encoder(body), status_code=status, media_type=PROBLEM, headers=headers
    )


def count_rejection(exc: RecloopError, stats: LoopStats) -> None:
    """``rejected_total{reason=kind}``; a store failure also ``store_errors_total{reason=
    cause}``, so a full disk and a lost database are told apart."""
    stats.inc(f"rejected_total:{exc.kind}")
    if isinstance(exc, StoreUnavailableError):
        stats.inc(f"store_errors_total:{exc.reason}")


def error_problem(exc: RecloopError, path: str, stats: LoopStats) -> JSONResponse:
    """A typed error as a problem, counted (``count_rejection``). An error that passes
    (``retry_after``: a store away) says when to try again."""
    count_rejection(exc, stats)
    headers = None if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
    return problem(exc.status, exc.kind, exc.title, str(exc), path, headers=headers)


def validation_problem(raw_errors: Sequence[Any], path: str, stats: LoopStats) -> JSONResponse:
    """A request body that failed its schema: 400 when it is not JSON at all, else 422,
    with pydantic's error list."""
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in raw_errors
    ]
    malformed = any(e["type"] == "json_invalid" for e in errors)
    kind = "malformed-json" if malformed else "invalid-input"
    stats.inc(f"rejected_total:{kind}")
    detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
    return problem(
        400 if malformed else 422,
        kind,
        "Malformed JSON" if malformed else "Invalid input",
        detail,
        path,
        errors,
    )
