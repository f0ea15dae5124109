"""Azure AI Personalizer's API over recloop's loops: code written for Personalizer (the
official ``azure-ai-personalizer`` client, the older ``azure-cognitiveservices-personalizer``
or plain REST) runs against recloop with only its endpoint and key changed.

Two styles of path, both under ``/personalizer`` (the default loop) and
``/loops/{loop}/personalizer`` (a named loop: use ``http://host:port/loops/NAME`` as the
endpoint):

* ``/personalizer/rank?api-version=2022-09-01-preview`` (the current client);
* ``/personalizer/v1.0/rank`` (v1.0: the older client and REST users).

This is one more router over the same :class:`~recloop.Loop`: rank is ``Loop.rank``,
reward ``Loop.reward``, activate ``Loop.activate``. What differs is only the wire format:
camelCase bodies, features as lists of objects, Personalizer's status codes (rank 201,
reward and activate 204) and its error shape ``{"error": {"code", "message"}}``.

Retries are safe: the client retries POSTs on 408/429/5xx. A rank retried with the same
``eventId`` and the same request answers the logged decision again; a reward carries the
client's ``x-ms-client-request-id`` (the same on every retry of one call) as its reward id,
so a retried reward counts once. As in Personalizer, where rewards are processed
asynchronously, a reward or activation for an unknown or expired event is accepted (204);
recloop counts it and keeps it in the dead-letter table.
"""

from __future__ import annotations

import re
from contextlib import suppress
from typing import Any, NoReturn

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from recloop.client import Loop
from recloop.core.errors import (
    DuplicateEventError,
    ExpiredEventError,
    InvalidInputError,
    MalformedJSONError,
    RecloopError,
    UnknownEventError,
)
from recloop.core.types import Action, Decision
from recloop.serving.deps import loop_for
from recloop.serving.personalizer_schemas import (
    PersonalizerRankRequest,
    PersonalizerReward,
    merge_features,
)
from recloop.settings import DEFAULT_LOOP

API_VERSIONS = ("2022-09-01-preview",)
"""``?api-version=`` values served (what azure-ai-personalizer 1.0.0b1 sends)."""
PATH_VERSIONS = ("v1.0", "v1.1-preview.3")
"""Versions in the path (``/personalizer/v1.0/...``)."""

router = APIRouter(tags=["personalizer"], include_in_schema=True)


class PersonalizerError(Exception):
    """An error to answer in Personalizer's shape, with its status and code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


CODES = {400: "BadRequest", 401: "Unauthorized", 404: "ResourceNotFound", 409: "Conflict"}


def error_response(status: int, message: str, inner: str | None = None) -> JSONResponse:
    """``{"error": {"code", "message"[, "innerError"]}}``; invalid input of any kind is a
    400 ``BadRequest`` (Personalizer has no 422), with recloop's kind as the inner code."""
    status = 400 if status == 422 else status
    error: dict[str, Any] = {"code": CODES.get(status, "BadRequest"), "message": message}
    if inner:
        error["innerError"] = {"code": inner}
    return JSONResponse({"error": error}, status_code=status)


def from_recloop_error(exc: RecloopError) -> JSONResponse:
    return error_response(exc.status, str(exc), exc.kind)


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
        _not_supported(request)
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


def _answer(decision: Decision) -> Response:
    body = {
        "eventId": decision.event_id,
        "ranking": [
            {"id": i, "probability": p}
            for i, p in zip(decision.ranking, decision.probabilities, strict=True)
        ],
        "rewardActionId": decision.chosen,
    }
    return Response(orjson.dumps(body), status_code=201, media_type="application/json")


async def _rank(request: Request, loop: str) -> Response:
    target = loop_for(request, loop)
    body: PersonalizerRankRequest = await parse_body(request, PersonalizerRankRequest)
    context = merge_features(body.context_features, "contextFeatures")
    actions = [Action(a.id, merge_features(a.features, f"actions.{a.id}")) for a in body.actions]
    try:
        decision = target.rank(
            context,
            actions,
            event_id=body.event_id,
            excluded_actions=body.excluded_actions,
            defer_activation=body.defer_activation,
        )
    except DuplicateEventError:
        assert body.event_id is not None
        return _replay(target, body.event_id, context, actions)
    return _answer(decision)


def _replay(
    target: Loop, event_id: str, context: dict[str, Any], actions: list[Action]
) -> Response:
    """A retried rank (same eventId, same request) gets the logged decision again."""
    logged = target.log.get_decision(event_id)
    same = (
        logged is not None
        and logged.context == context
        and [(a.id, a.features) for a in logged.actions] == [(a.id, a.features) for a in actions]
    )
    if logged is None or not same:
        raise PersonalizerError(
            409, "Conflict", f"eventId {event_id!r} was already used by a different rank request"
        )
    return _answer(logged)


async def _reward(request: Request, event_id: str, loop: str) -> Response:
    target = loop_for(request, loop)
    body: PersonalizerReward = await parse_body(request, PersonalizerReward)
    retry_id = request.headers.get("x-ms-client-request-id")
    # unknown or expired: counted and dead-lettered; duplicate: a retry already counted.
    # Either way accepted, as Personalizer does
    with suppress(UnknownEventError, ExpiredEventError, DuplicateEventError):
        target.reward(event_id, body.value, reward_id=retry_id)
    return Response(status_code=204)


async def _activate(request: Request, event_id: str, loop: str) -> Response:
    target = loop_for(request, loop)
    with suppress(UnknownEventError, ExpiredEventError):  # counted and dead-lettered
        target.activate(event_id)
    return Response(status_code=204)


# -- ?api-version= style --------------------------------------------------------------------
@router.post("/rank", status_code=201, summary="Personalizer: rank")
async def rank(request: Request, loop: str = DEFAULT_LOOP) -> Response:
    check_query_version(request)
    return await _rank(request, loop)


@router.post("/events/{event_id}/reward", status_code=204, summary="Personalizer: reward")
async def reward(request: Request, event_id: str, loop: str = DEFAULT_LOOP) -> Response:
    check_query_version(request)
    return await _reward(request, event_id, loop)


@router.post("/events/{event_id}/activate", status_code=204, summary="Personalizer: activate")
async def activate(request: Request, event_id: str, loop: str = DEFAULT_LOOP) -> Response:
    check_query_version(request)
    return await _activate(request, event_id, loop)


# -- /v1.0/ style -------------------------------------------------------------------------------
@router.post("/{version}/rank", status_code=201, summary="Personalizer v1.0: rank")
async def rank_v1(request: Request, version: str, loop: str = DEFAULT_LOOP) -> Response:
    check_path_version(request, version)
    return await _rank(request, loop)


@router.post(
    "/{version}/events/{event_id}/reward", status_code=204, summary="Personalizer v1.0: reward"
)
async def reward_v1(
    request: Request, version: str, event_id: str, loop: str = DEFAULT_LOOP
) -> Response:
    check_path_version(request, version)
    return await _reward(request, event_id, loop)


@router.post(
    "/{version}/events/{event_id}/activate",
    status_code=204,
    summary="Personalizer v1.0: activate",
)
async def activate_v1(
    request: Request, version: str, event_id: str, loop: str = DEFAULT_LOOP
) -> Response:
    check_path_version(request, version)
    return await _activate(request, event_id, loop)


@router.api_route(
    "/{rest:path}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,
)
async def not_supported(request: Request, rest: str) -> Response:
    """Everything else the client can call: a clear 404, never a 500."""
    _not_supported(request)


def _not_supported(request: Request) -> NoReturn:
    raise PersonalizerError(
        404,
        "ResourceNotFound",
        f"recloop does not implement Personalizer's {request.method} {request.url.path} yet "
        "(supported: rank, events/{eventId}/reward, events/{eventId}/activate, the same "
        "under multislot/, configurations/service and /policy, model (export, import, reset), "
        "model/properties, logs (properties, delete), and evaluations)",
    )
