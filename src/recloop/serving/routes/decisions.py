"""Rank, reward and activate: the decision loop over HTTP.

The hot routes parse their body with pydantic-core's JSON parser in one pass
(``model_validate_json``) and write the answer with orjson: FastAPI's default path (stdlib
json, then validation, then response-model validation) cost about twice the CPU per rank.
The request and response models still define the contract and the OpenAPI document.

The answers are made by the ``*_answer`` functions, shared with
:mod:`recloop.serving.fast_path`, which serves these same routes before FastAPI's routing
(the routes here document them and serve any request the fast path passes on).
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from recloop.client import Loop
from recloop.core.errors import DuplicateEventError
from recloop.core.types import Decision
from recloop.serving.deps import loop_for
from recloop.serving.schemas import Accepted, EventId, RankRequest, RankResponse, RewardRequest
from recloop.settings import DEFAULT_LOOP

router = APIRouter(tags=["decisions"])

Model = TypeVar("Model", bound=BaseModel)
JSON = "application/json"


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI requestBody for a route that parses its own body."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        }
    }


def parse(model: type[Model], raw: bytes) -> Model:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


def rank_answer(loop: Loop, raw: bytes) -> bytes:
    """``POST /v1/rank``: the request body in, the answer's JSON out. A rank retried with
    its ``event_id`` (its answer lost on the way) is answered from the log (``replayed``)."""
    body = parse(RankRequest, raw)
    try:
        decision = loop.decider.rank(
            body.context,
            [{"id": a.id, "features": a.features, "fields": a.fields} for a in body.actions],
            event_id=body.event_id,
            excluded_actions=body.excluded_actions,
            defer_activation=body.defer_activation,
        )
    except DuplicateEventError:
        logged = replayed(loop, body)
        if logged is None:  # a rejection; a replay is not one
            loop.stats.inc("rejected_total:duplicate-event")
            raise
        decision = logged
    answer: dict[str, Any] = {
        "event_id": decision.event_id,
        "ranking": [
            {"id": i, "probability": p}
            for i, p in zip(decision.ranking, decision.probabilities, strict=True)
        ],
        "reward_action_id": decision.chosen,
        "model_version": decision.model_version,
        "policy": decision.policy,
    }
    if decision.exploration is not None:
        answer["exploration"] = decision.exploration
    return orjson.dumps(answer)


def replayed(loop: Loop, body: RankRequest) -> Decision | None:
    """The logged decision of a retried rank: the same ``event_id`` with the same context,
    action ids and exclusions. A client whose answer was lost (a timeout, a dropped
    connection) must be able to retry and learn the ranking it has to show: a 409 told it
    only that the decision exists, and the ranking logged for it was lost to it. The
    actions' features are not compared (the catalogue's ``fields`` are featurized before
    they are logged); None (a 409) when the event id was used by another request."""
    assert body.event_id is not None  # only a given event id can be a duplicate
    logged = loop.log.get_decision(body.event_id)
    if logged is None:
        return None
    ids = [a.id for a in body.actions]
    same = (
        logged.context == body.context
        and [a.id for a in logged.actions] == ids
        and set(logged.excluded) == set(body.excluded_actions)
        and logged.deferred == body.defer_activation
    )
    return logged if same else None


def reward_answer(loop: Loop, event_id: str, raw: bytes) -> bytes:
    body = parse(RewardRequest, raw)
    loop.reward(event_id, body.value, reward_id=body.reward_id)
    return orjson.dumps({"event_id": event_id, "status": "accepted"})


def activate_answer(loop: Loop, event_id: str) -> bytes:
    loop.activate(event_id)
    return orjson.dumps({"event_id": event_id, "status": "activated"})


@router.post(
    "/rank",
    response_model=RankResponse,
    summary="Rank actions and log the decision",
    responses={
        409: {
            "description": "The event_id was already used by another request (a retry of "
            "the same request is answered with its logged decision)"
        }
    },
    openapi_extra=body_schema(RankRequest),
)
async def rank(request: Request, loop: str = DEFAULT_LOOP) -> Response:
    target = loop_for(request, loop)
    return Response(rank_answer(target, await request.body()), media_type=JSON)


@router.post(
    "/events/{event_id}/reward",
    response_model=Accepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Report a reward for a logged decision",
    responses={
        409: {"description": "A reward with this reward_id was already received"},
        410: {"description": "The event's reward window has closed"},
    },
    openapi_extra=body_schema(RewardRequest),
)
async def reward(event_id: EventId, request: Request, loop: str = DEFAULT_LOOP) -> Response:
    target = loop_for(request, loop)
    return Response(reward_answer(target, event_id, await request.body()), 202, media_type=JSON)


@router.post(
    "/events/{event_id}/activate",
    response_model=Accepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Activate a deferred decision so it is learned from",
    responses={410: {"description": "The event's reward window has closed"}},
)
async def activate(event_id: EventId, request: Request, loop: str = DEFAULT_LOOP) -> Response:
    return Response(activate_answer(loop_for(request, loop), event_id), 202, media_type=JSON)
