"""The model store: list versions, roll back, follow the newest again."""

from __future__ import annotations

from fastapi import APIRouter

from recloop.serving.deps import LoopDep
from recloop.serving.schemas import ModelOut, ModelsOut

router = APIRouter(tags=["models"])


def _models(loop: LoopDep) -> ModelsOut:
    serving = loop.model_version
    return ModelsOut(
        serving=serving,
        pinned=loop.models.pinned(),
        versions=[
            ModelOut(
                version=v.version,
                created=v.created,
                sha256=v.sha256,
                meta=dict(v.meta),
                serving=v.version == serving,
            )
            for v in loop.model_versions()
        ],
    )


@router.get("/models", response_model=ModelsOut, summary="Model versions, newest first")
async def list_models(loop: LoopDep) -> ModelsOut:
    return _models(loop)


@router.post(
    "/models/latest/activate",
    response_model=ModelsOut,
    summary="Serve each new version as it is trained (undo a rollback)",
)
async def follow_latest(loop: LoopDep) -> ModelsOut:
    loop.follow_latest()
    return _models(loop)


@router.post(
    "/models/{version}/activate",
    response_model=ModelsOut,
    summary="Serve this version (roll back); new versions are stored but not served",
)
async def activate_model(version: str, loop: LoopDep) -> ModelsOut:
    loop.activate_model(version)
    return _models(loop)
