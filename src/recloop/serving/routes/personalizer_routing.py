"""What every Personalizer route shares: the API versions served and their checks,
Personalizer's error shape, body parsing, and ``add_routes``, which registers a handler
under both path styles (``/X?api-version=...`` and ``/{version}/X``)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from recloop.core.errors import InvalidInputError, MalformedJSONError, RecloopError
from recloop.settings import DEFAULT_LOOP

Handler = Callable[[Request, str], Awaitable[Response] | Response]
"""(request, loop name) -> response; path parameters are in ``request.path_params``."""

API_VERSIONS = ("2022-09-01-preview",)
"""``?api-version=`` values served (what azure-ai-personalizer 1.0.0b1 sends)."""
PATH_VERSIONS = ("v1.0", "v1.1-preview.3")
"""Versions in the path (``/personalizer/v1.0/...``)."""


class PersonalizerError(Exception):
    """An error to answer in Personalizer's shape, with its status and code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


CODES = {
    400: "BadRequest",
    401: "Unauthorized",
    404: "ResourceNotFound",
    409: "Conflict",
    503: "ServiceUnavailable",
}


def error_response(status: int, message: str, inner: str | None = None) -> JSONResponse:
    """``{"error": {"code", "message"[, "innerError"]}}``; invalid input of any kind is a
    400 ``BadRequest`` (Personalizer has no 422), with recloop's kind as the inner code."""
    status = 400 if status == 422 else status
    error: dict[str, Any] = {"code": CODES.get(status, "BadRequest"), "message": message}
    if inner:
        error["innerError"] = {"code": inner}
    return JSONResponse({"error": error}, status_code=status)


def from_recloop_error(exc: RecloopError) -> JSONResponse:
    response = error_response(exc.status, str(exc), exc.kind)
    if exc.retry_after is not None:  # a store away: the client may try again
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def is_personalizer_path(path: str) -> bool:
    return path.startswith("/personalizer") or (
        path.startswith("/loops/") and "/personalizer" in path
    )


def check_query_version(request: Request) -> None:
    version = request.query_params.get("api-version")
    if version not in API_VERSIONS:
        given = "no api-version" if version is None else f"api-version {version!r}"
        raise PersonalizerError(
            404,
            "ResourceNotFound",
            f"{given} is not supported; supported: ?api-version= {', '.join(API_VERSIONS)}, "
            f"or the path versions {', '.join(PATH_VERSIONS)} (/personalizer/v1.0/...)",
        )


def check_path_version(request: Request, version: str) -> None:
    if version in PATH_VERSIONS:
        return
    if not re.fullmatch(r"v\d+(\.\d+)*(-preview(\.\d+)?)?", version):
        not_supported(request)
    raise PersonalizerError(
        404,
        "ResourceNotFound",
        f"API version {version!r} is not supported; supported: "
        f"{', '.join(PATH_VERSIONS)} in the path, or ?api-version= {', '.join(API_VERSIONS)}",
    )


async def parse_body(request: Request, model: type[BaseModel]) -> Any:
    raw = await request.body()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise MalformedJSONError(
                f"the body is not valid JSON: {exc.errors()[0]['msg']}"
            ) from None
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise InvalidInputError(detail) from None


def not_supported(request: Request) -> NoReturn:
    raise PersonalizerError(
        404,
        "ResourceNotFound",
        f"recloop does not implement Personalizer's {request.method} {request.url.path} yet "
        "(supported: rank, events/{eventId}/reward, events/{eventId}/activate, the same "
        "under multislot/, configurations/service and /policy, model (export, import, reset), "
        "model/properties, logs (properties, delete), and evaluations)",
    )


async def _call(handler: Handler, request: Request, loop: str) -> Response:
    result = handler(request, loop)
    if inspect.isawaitable(result):
        result = await result
    assert isinstance(result, Response)
    return result


def add_routes(
    router: APIRouter,
    method: str,
    path: str,
    handler: Handler,
    status_code: int = 200,
    summary: str = "",
) -> None:
    """``METHOD path?api-version=...`` and ``METHOD /{version}path`` for one handler."""

    async def with_query(request: Request, loop: str = DEFAULT_LOOP) -> Response:
        check_query_version(request)
        return await _call(handler, request, loop)

    async def with_path(request: Request, version: str, loop: str = DEFAULT_LOOP) -> Response:
        check_path_version(request, version)
        return await _call(handler, request, loop)

    name = re.sub(r"[^a-z0-9]+", "_", f"{method} {path}".lower()).strip("_")
    for route, endpoint, style in ((path, with_query, ""), ("/{version}" + path, with_path, "v1_")):
        router.add_api_route(
            route,
            endpoint,
            methods=[method],
            status_code=status_code,
            summary=f"Personalizer: {summary}" if summary else None,
            name=f"personalizer_{style}{name}",
        )
