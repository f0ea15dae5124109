"""Candidate policies and their continuously updated off-policy evaluations."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, status

from recloop.serving.deps import LoopDep
from recloop.serving.schemas import PolicyIn

router = APIRouter(tags=["evaluation"])


@router.post(
    "/policies",
    status_code=status.HTTP_201_CREATED,
    summary="Register a candidate policy for off-policy evaluation",
)
async def register_policy(body: PolicyIn, loop: LoopDep) -> dict[str, Any]:
    loop.register_policy(body.name, body.kind, body.params, body.explorer)
    return {"name": body.name, "kind": body.kind, "params": body.params}


@router.delete(
    "/policies/{name}", status_code=status.HTTP_204_NO_CONTENT, summary="Remove a candidate policy"
)
async def delete_policy(name: str, loop: LoopDep) -> None:
    loop.unregister_policy(name)


@router.get("/evaluations", summary="IPS/SNIPS of every candidate, and the observed average")
async def evaluations(loop: LoopDep) -> dict[str, Any]:
    return loop.evaluations()


@router.get("/dead-letters", summary="Rewards and activations that could not be joined")
async def dead_letters(
    loop: LoopDep, limit: int = Query(100, ge=1, le=1000)
) -> list[dict[str, Any]]:
    return [
        {
            "reason": d.reason,
            "event_id": d.event_id,
            "timestamp": d.timestamp,
            "payload": d.payload,
            "source_offset": d.source_offset,
        }
        for d in loop.log.dead_letters(min(max(limit, 1), 1000))
    ]
