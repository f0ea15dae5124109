"""Personalizer's multi-slot rank, reward and activate over a recloop loop.

A multi-slot event fills several slots of a page (a hero banner, a sidebar...) from one
action list, each action in one slot at most. recloop decides the slots in order, each one
a decision of the loop with event id ``<eventId>/<slotId>``: the slot's id and features
join the context (``slot``), and the actions earlier slots took are excluded. So every slot
is explored, logged, joined, learned from and evaluated like any decision, and a slot's
reward is that decision's reward. The slot's baseline action is its first candidate, so in
apprentice mode each slot shows its baseline. Which slots an event has is recorded before
its slots are decided (a state key of the loop), so activate can find them, in any process.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from contextlib import suppress

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from recloop.client import Loop
from recloop.core.errors import (
    DuplicateEventError,
    ExpiredEventError,
    InvalidInputError,
    UnknownEventError,
)
from recloop.core.types import Action
from recloop.serving.deps import loop_for
from recloop.serving.personalizer_schemas import (
    PersonalizerMultiSlotRankRequest,
    PersonalizerMultiSlotRankResponse,
    PersonalizerMultiSlotReward,
    merge_features,
)
from recloop.serving.routes.personalizer_routing import PersonalizerError, add_routes, parse_body
from recloop.serving.schemas import EVENT_ID_PATH

router = APIRouter(tags=["personalizer"])
INDEX = "personalizer.multislot:"


def slot_event(event_id: str, slot_id: str) -> str:
    return f"{event_id}/{slot_id}"


def _check(body: PersonalizerMultiSlotRankRequest) -> None:
    ids = [a.id for a in body.actions]
    known = set(ids)
    if len(known) != len(ids):
        raise InvalidInputError("action ids must be unique")
    slots = [s.id for s in body.slots]
    if len(set(slots)) != len(slots):
        raise InvalidInputError("slot ids must be unique")
    baselines = [s.baseline_action for s in body.slots]
    if len(set(baselines)) != len(baselines):
        raise InvalidInputError("each slot needs a baselineAction of its own")
    for slot in body.slots:
        if slot.baseline_action not in known:
            raise InvalidInputError(
                f"slot {slot.id!r}: baselineAction {slot.baseline_action!r} is not an action"
            )
        if slot.baseline_action in slot.excluded_actions:
            raise InvalidInputError(f"slot {slot.id!r}: its baselineAction is excluded")
        unknown = sorted(set(slot.excluded_actions) - known)
        if unknown:
            raise InvalidInputError(f"slot {slot.id!r}: excludedActions names unknown {unknown}")


def _fingerprint(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _answer(event_id: str, slots: list[tuple[str, str]]) -> Response:
    body = {"eventId": event_id, "slots": [{"id": s, "rewardActionId": a} for s, a in slots]}
    return Response(orjson.dumps(body), status_code=201, media_type="application/json")


def _replay(target: Loop, event_id: str, fingerprint: str, index: str) -> Response:
    """A retried multi-slot rank (same eventId, same body) gets the logged slots again."""
    recorded = json.loads(index)
    if recorded["fingerprint"] != fingerprint:
        target.stats.inc("rejected_total:duplicate-event")  # a replay is not counted
        raise PersonalizerError(
            409, "Conflict", f"eventId {event_id!r} was already used by a different rank request"
        )
    slots = []
    for slot_id in recorded["slots"]:
        logged = target.log.get_decision(slot_event(event_id, slot_id))
        if logged is None:  # the first try failed part-way: nothing to answer with
            target.stats.inc("rejected_total:duplicate-event")
            raise PersonalizerError(
                409, "Conflict", f"eventId {event_id!r} was used by an unfinished rank request"
            )
        slots.append((slot_id, logged.chosen))
    return _answer(event_id, slots)


async def _rank(request: Request, loop: str) -> Response:
    target = loop_for(request, loop)
    raw = await request.body()
    body: PersonalizerMultiSlotRankRequest = await parse_body(
        request, PersonalizerMultiSlotRankRequest
    )
    _check(body)
    event_id = body.event_id or uuid.uuid4().hex
    fingerprint = _fingerprint(raw)
    index = target.joined.get_state(INDEX + event_id)
    if index is not None:
        return _replay(target, event_id, fingerprint, index)
    slot_ids = [s.id for s in body.slots]
    target.joined.set_state(
        INDEX + event_id, json.dumps({"slots": slot_ids, "fingerprint": fingerprint})
    )
    context = merge_features(body.context_features, "contextFeatures")
    actions = [Action(a.id, merge_features(a.features, f"actions.{a.id}")) for a in body.actions]
    taken: list[str] = []
    answers = []
    for slot in body.slots:
        excluded = list(dict.fromkeys([*slot.excluded_actions, *taken]))
        if len(excluded) >= len(actions):
            raise InvalidInputError(
                f"slot {slot.id!r} has no action left (each action fills one slot at most)"
            )
        slot_context = {**context, "slot": {"id": slot.id, **merge_features(slot.features, "slot")}}
        # the slot's baseline first: apprentice mode (and the first-action default policy
        # before any model) shows the first candidate
        ordered = sorted(actions, key=lambda a: a.id != slot.baseline_action)
        try:
            decision = target.decider.rank(
                slot_context,
                ordered,
                event_id=slot_event(event_id, slot.id),
                excluded_actions=excluded,
                defer_activation=body.defer_activation,
            )
        except DuplicateEventError:  # logged by a concurrent retry of this same request
            return _replay(
                target, event_id, fingerprint, target.joined.get_state(INDEX + event_id) or "{}"
            )
        taken.append(decision.chosen)
        answers.append((slot.id, decision.chosen))
    return _answer(event_id, answers)


async def _reward(request: Request, loop: str) -> Response:
    target, event_id = loop_for(request, loop), request.path_params["event_id"]
    body: PersonalizerMultiSlotReward = await parse_body(request, PersonalizerMultiSlotReward)
    retry_id = request.headers.get("x-ms-client-request-id")
    for reward in body.reward:
        reward_id = None if retry_id is None else f"{retry_id}/{reward.slot_id}"
        # unknown slot or event: counted and dead-lettered; a retry: counted once. Accepted
        with suppress(UnknownEventError, ExpiredEventError, DuplicateEventError):
            target.reward(slot_event(event_id, reward.slot_id), reward.value, reward_id=reward_id)
    return Response(status_code=204)


async def _activate(request: Request, loop: str) -> Response:
    target, event_id = loop_for(request, loop), request.path_params["event_id"]
    index = target.joined.get_state(INDEX + event_id)
    slots: list[str] = json.loads(index)["slots"] if index is not None else []
    with suppress(UnknownEventError, ExpiredEventError):
        if not slots:
            target.activate(event_id)  # no such event: counted and dead-lettered
        for slot_id in slots:
            target.activate(slot_event(event_id, slot_id))
    return Response(status_code=204)


add_routes(
    router,
    "POST",
    "/multislot/rank",
    _rank,
    201,
    "multi-slot rank",
    body=PersonalizerMultiSlotRankRequest,
    answer=PersonalizerMultiSlotRankResponse,
    errors={409: "The eventId was already used by a different (or unfinished) rank request"},
)
add_routes(
    router,
    "POST",
    "/multislot/events/{event_id}/reward",
    _reward,
    204,
    "multi-slot reward",
    body=PersonalizerMultiSlotReward,
    path_schemas=EVENT_ID_PATH,
)
add_routes(
    router,
    "POST",
    "/multislot/events/{event_id}/activate",
    _activate,
    204,
    "multi-slot activate",
    path_schemas=EVENT_ID_PATH,
)
