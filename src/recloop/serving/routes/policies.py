"""Candidate policies and their continuously updated off-policy evaluations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request, status

from recloop.core.errors import InvalidInputError
from recloop.serving.deps import LoopDep
from recloop.serving.schemas import PolicyIn

router = APIRouter(tags=["evaluation"])


@router.post(
    "/policies",
    status_code=status.HTTP_201_CREATED,
    summary="Register a candidate policy for off-policy evaluation",
)
def register_policy(body: PolicyIn, loop: LoopDep, request: Request) -> dict[str, Any]:
    params = body.params
    if body.kind == "agent":
        params = confined_agent_params(params, request.app.state.settings.agents_dir)
    loop.register_policy(body.name, body.kind, params, body.explorer)
    return {"name": body.name, "kind": body.kind, "params": params}


def confined_agent_params(params: dict[str, Any], agents_dir: Path | None) -> dict[str, Any]:
    """An ``agent`` candidate names a file the server reads: over HTTP only one under the
    ``agents_dir`` setting (unset: refused), never an arbitrary path of the server's
    (whose existence the error message would otherwise reveal)."""
    if agents_dir is None:
        raise InvalidInputError(
            "loading saved agents by path over HTTP is off: set agents_dir on the server "
            "and name a path under it"
        )
    raw = params.get("path")
    if not isinstance(raw, str) or not raw or "\0" in raw:
        raise InvalidInputError("an 'agent' policy needs params.path (a saved agent.zip)")
    root = agents_dir.resolve()
    path = (root / raw).resolve()
    if not path.is_relative_to(root):
        raise InvalidInputError(f"params.path must lie under agents_dir ({agents_dir})")
    return {**params, "path": str(path)}


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
