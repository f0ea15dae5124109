"""Rank, reward and activate: the decision loop over HTTP."""

from __future__ import annotations

from fastapi import APIRouter, status

from recloop.serving.deps import LoopDep
from recloop.serving.schemas import (
    Accepted,
    RankedAction,
    RankRequest,
    RankResponse,
    RewardRequest,
)

router = APIRouter(tags=["decisions"])


@router.post("/rank", response_model=RankResponse, summary="Rank actions and log the decision")
async def rank(body: RankRequest, loop: LoopDep) -> RankResponse:
    decision = loop.rank(
        body.context,
        [{"id": a.id, "features": a.features} for a in body.actions],
        event_id=body.event_id,
        excluded_actions=body.excluded_actions,
        defer_activation=body.defer_activation,
    )
    return RankResponse(
        event_id=decision.event_id,
        ranking=[
            RankedAction(id=i, probability=p)
            for i, p in zip(decision.ranking, decision.probabilities, strict=True)
        ],
        reward_action_id=decision.chosen,
        model_version=decision.model_version,
        policy=decision.policy,
    )


@router.post(
    "/events/{event_id}/reward",
    response_model=Accepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Report a reward for a logged decision",
)
async def reward(event_id: str, body: RewardRequest, loop: LoopDep) -> Accepted:
    loop.reward(event_id, body.value, reward_id=body.reward_id)
    return Accepted(event_id=event_id)


@router.post(
    "/events/{event_id}/activate",
    response_model=Accepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Activate a deferred decision so it is learned from",
)
async def activate(event_id: str, loop: LoopDep) -> Accepted:
    loop.activate(event_id)
    return Accepted(event_id=event_id, status="activated")
