"""What every Personalizer route shares: the API versions served and their checks,
Personalizer's error shape, body parsing, and ``add_routes``, which registers a handler
under both path styles (``/X?api-version=...`` and ``/{version}/X``)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, NoReturn

from fastapi import APIRouter, Path, Request
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
    403: "Forbidden",
    404: "ResourceNotFound",
    409: "Conflict",
    429: "TooManyRequests",
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
    raise unsupported(request)


def unsupported(request: Request) -> PersonalizerError:
    """The 404 of a Personalizer path recloop does not serve (the app's 404 handler answers
    it for paths no route matches): what is served instead."""
    return PersonalizerError(
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


VersionParam = Annotated[
    str,
    Path(
        description="The API version in the path (v1.0 clients).",
        json_schema_extra={"enum": list(PATH_VERSIONS)},
    ),
]
"""Not a ``Literal``: an unknown version is Personalizer's 404, not FastAPI's 422."""

API_VERSION_PARAMETER: dict[str, Any] = {
    "name": "api-version",
    "in": "query",
    "required": True,
    "description": "The API version (what azure-ai-personalizer sends).",
    "schema": {"type": "string", "enum": list(API_VERSIONS)},
}


def _path_parameter(name: str, schema: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema or {"type": "string", "minLength": 1},
    }


def _content(kind: type[BaseModel] | str) -> dict[str, Any]:
    if isinstance(kind, str):
        return {kind: {"schema": {"type": "string", "format": "binary"}}}
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{kind.__name__}"}}}


def _openapi_extra(
    params: list[dict[str, Any]], body: type[BaseModel] | str | None
) -> dict[str, Any]:
    extra: dict[str, Any] = {"parameters": params}
    if body is not None:
        extra["requestBody"] = {"required": True, "content": _content(body)}
    return extra


def _responses(
    status_code: int, answer: type[BaseModel] | str | None, errors: dict[int, str]
) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {s: {"description": d} for s, d in errors.items()}
    if answer is not None:
        out[status_code] = {"description": "Successful Response", "content": _content(answer)}
    return out


def add_routes(
    router: APIRouter,
    method: str,
    path: str,
    handler: Handler,
    status_code: int = 200,
    summary: str = "",
    body: type[BaseModel] | str | None = None,
    answer: type[BaseModel] | str | None = None,
    errors: dict[int, str] | None = None,
    path_schemas: dict[str, dict[str, Any]] | None = None,
) -> None:
    """``METHOD path?api-version=...`` and ``METHOD /{version}path`` for one handler.

    The handlers read their path parameters and their body themselves (one handler serves
    both styles), so FastAPI sees neither: what they take is declared here for the OpenAPI
    document, from ``path`` and from ``body`` (a model, parsed by :func:`parse_body`, or a
    media type such as ``application/octet-stream``), with ``answer`` (a model or a media
    type), the statuses particular to the route (``errors``; those every Personalizer
    route shares are added by :mod:`recloop.serving.openapi`) and the schemas of path
    parameters that are not just any string (``path_schemas``)."""

    async def with_query(request: Request, loop: str = DEFAULT_LOOP) -> Response:
        check_query_version(request)
        return await _call(handler, request, loop)

    async def with_path(
        request: Request, version: VersionParam, loop: str = DEFAULT_LOOP
    ) -> Response:
        check_path_version(request, version)
        return await _call(handler, request, loop)

    name = re.sub(r"[^a-z0-9]+", "_", f"{method} {path}".lower()).strip("_")
    own = [_path_parameter(p, (path_schemas or {}).get(p)) for p in re.findall(r"{(\w+)}", path)]
    for route, endpoint, style, params in (
        (path, with_query, "", [*own, API_VERSION_PARAMETER]),
        ("/{version}" + path, with_path, "v1_", own),
    ):
        router.add_api_route(
            route,
            endpoint,
            methods=[method],
            status_code=status_code,
            summary=f"Personalizer: {summary}" if summary else None,
            name=f"personalizer_{style}{name}",
            openapi_extra=_openapi_extra(params, body),
            responses=_responses(status_code, answer, errors or {}),
            # a media type answered (a model file): that one, not FastAPI's JSON besides
            response_class=Response if isinstance(answer, str) else JSONResponse,
        )
