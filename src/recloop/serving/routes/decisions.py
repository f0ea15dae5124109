"""Rank, reward and activate: the decision loop over HTTP.

The hot routes parse their body with pydantic-core's JSON parser in one pass
(``model_validate_json``) and write the answer with orjson: FastAPI's default path (stdlib
json, then validation, then response-model validation) cost about twice the CPU per rank.
The request and response models still define the contract and the OpenAPI document.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from recloop.serving.deps import loop_for
from recloop.serving.schemas import Accepted, RankRequest, RankResponse, RewardRequest
from recloop.settings import DEFAULT_LOOP

router = APIRouter(tags=["decisions"])

Model = TypeVar("Model", bound=BaseModel)


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


async def parse_body(request: Request, model: type[Model]) -> Model:
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


def json_response(payload: dict[str, Any], status_code: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status_code, media_type="application/json")


@router.post(
    "/rank",
    response_model=RankResponse,
    summary="Rank actions and log the decision",
    openapi_extra=body_schema(RankRequest),
)
async def rank(request: Request, loop: str = DEFAULT_LOOP) -> Response:
    target = loop_for(request, loop)
    body = await parse_body(request, RankRequest)
    decision = target.rank(
        body.context,
        [{"id": a.id, "features": a.features, "fields": a.fields} for a in body.actions],
        event_id=body.event_id,
        excluded_actions=body.excluded_actions,
        defer_activation=body.defer_activation,
    )
    return json_response(
        {
            "event_id": decision.event_id,
            "ranking": [
                {"id": i, "probability": p}
                for i, p in zip(decision.ranking, decision.probabilities, strict=True)
            ],
            "reward_action_id": decision.chosen,
            "model_version": decision.model_version,
            "policy": decision.policy,
        }
    )


@router.post(
    "/events/{event_id}/reward",
    response_model=Accepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Report a reward for a logged decision",
    openapi_extra=body_schema(RewardRequest),
)
async def reward(event_id: str, request: Request, loop: str = DEFAULT_LOOP) -> Response:
    target = loop_for(request, loop)
    body = await parse_body(request, RewardRequest)
    target.reward(event_id, body.value, reward_id=body.reward_id)
    return json_response({"event_id": event_id, "status": "accepted"}, 202)


@router.post(
    "/events/{event_id}/activate",
    response_model=Accepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Activate a deferred decision so it is learned from",
)
async def activate(event_id: str, request: Request, loop: str = DEFAULT_LOOP) -> Response:
    loop_for(request, loop).activate(event_id)
    return json_response({"event_id": event_id, "status": "activated"}, 202)
