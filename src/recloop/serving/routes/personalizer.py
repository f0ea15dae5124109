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

from contextlib import suppress
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from recloop.client import Loop
from recloop.core.errors import DuplicateEventError, ExpiredEventError, UnknownEventError
from recloop.core.types import Action, Decision
from recloop.serving.deps import loop_for
from recloop.serving.personalizer_schemas import (
    PersonalizerRankRequest,
    PersonalizerRankResponse,
    PersonalizerReward,
    merge_features,
)
from recloop.serving.routes.personalizer_routing import (
    PersonalizerError,
    add_routes,
    parse_body,
)
from recloop.serving.schemas import EVENT_ID_PATH

router = APIRouter(tags=["personalizer"])


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
        decision = target.decider.rank(
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
        target.stats.inc("rejected_total:duplicate-event")  # a replay is not counted
        raise PersonalizerError(
            409, "Conflict", f"eventId {event_id!r} was already used by a different rank request"
        )
    return _answer(logged)


async def _reward(request: Request, loop: str) -> Response:
    target, event_id = loop_for(request, loop), request.path_params["event_id"]
    body: PersonalizerReward = await parse_body(request, PersonalizerReward)
    retry_id = request.headers.get("x-ms-client-request-id")
    # unknown or expired: counted and dead-lettered; duplicate: a retry already counted.
    # Either way accepted, as Personalizer does
    with suppress(UnknownEventError, ExpiredEventError, DuplicateEventError):
        target.reward(event_id, body.value, reward_id=retry_id)
    return Response(status_code=204)


async def _activate(request: Request, loop: str) -> Response:
    target, event_id = loop_for(request, loop), request.path_params["event_id"]
    with suppress(UnknownEventError, ExpiredEventError):  # counted and dead-lettered
        target.activate(event_id)
    return Response(status_code=204)


add_routes(
    router,
    "POST",
    "/rank",
    _rank,
    201,
    "rank",
    body=PersonalizerRankRequest,
    answer=PersonalizerRankResponse,
    errors={409: "The eventId was already used by a different rank request"},
)
add_routes(
    router,
    "POST",
    "/events/{event_id}/reward",
    _reward,
    204,
    "reward",
    body=PersonalizerReward,
    path_schemas=EVENT_ID_PATH,
)
add_routes(
    router,
    "POST",
    "/events/{event_id}/activate",
    _activate,
    204,
    "activate",
    path_schemas=EVENT_ID_PATH,
)
