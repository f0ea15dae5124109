"""Personalizer's administration reads over a recloop loop: its service configuration, its
learning policy, its model (export and properties). Same paths, versions and error shape as
:mod:`recloop.serving.routes.personalizer`; what recloop cannot map yet answers there with a
clear 404."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from recloop.client import Loop
from recloop.serving.deps import loop_for
from recloop.serving.routes.personalizer import (
    PersonalizerError,
    check_path_version,
    check_query_version,
)
from recloop.settings import DEFAULT_LOOP

router = APIRouter(tags=["personalizer"])


def iso_duration(seconds: float) -> str:
    """ISO 8601, as Personalizer writes its time spans: 600 -> "PT10M"."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    fraction = seconds - whole
    out = "PT" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    if secs or fraction or out == "PT":
        out += f"{secs + fraction:g}S"
    return out


def iso_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def service_configuration(loop: Loop) -> dict[str, Any]:
    """The loop's settings in Personalizer's names."""
    s = loop.settings
    return {
        "rewardWaitTime": iso_duration(s.exp_unit_seconds),
        "defaultReward": s.default_reward,
        "rewardAggregation": s.reward_aggregation,
        "explorationPercentage": s.epsilon if s.explorer == "epsilon-greedy" else 0.0,
        "modelExportFrequency": iso_duration(s.checkpoint_every_seconds),
        "logRetentionDays": -1,  # recloop's log is append-only: nothing is deleted
        "modelRetrainDays": 0,
        "learningMode": "Online",
        "isAutoOptimizationEnabled": False,
    }


def _configuration(request: Request, loop: str) -> Response:
    return JSONResponse(service_configuration(loop_for(request, loop)))


def _policy(request: Request, loop: str) -> Response:
    target = loop_for(request, loop)
    return JSONResponse({"name": target.name, "arguments": target.settings.full_vw_args()})


def _latest(target: Loop) -> tuple[Any, bytes]:
    latest = target.models.latest()
    if latest is None:
        raise PersonalizerError(
            404, "ResourceNotFound", "no model yet: the loop serves its default policy"
        )
    return target.models.get(latest.version)


def _model(request: Request, loop: str) -> Response:
    version, blob = _latest(loop_for(request, loop))
    return Response(
        blob,
        media_type="application/octet-stream",
        headers={"x-recloop-model-version": version.version},
    )


def _model_properties(request: Request, loop: str) -> Response:
    target = loop_for(request, loop)
    versions = target.models.versions(10_000)
    if not versions:
        _latest(target)  # raises the 404
    return JSONResponse(
        {
            "creationTime": iso_time(min(v.created for v in versions)),
            "lastModifiedTime": iso_time(max(v.created for v in versions)),
        }
    )


READS = {
    "/configurations/service": _configuration,
    "/configurations/policy": _policy,
    "/model": _model,
    "/model/properties": _model_properties,
}


def _add(path: str, handler: Any) -> None:
    """GET ``path?api-version=...`` and GET ``/{version}path`` for one handler."""

    async def with_query(request: Request, loop: str = DEFAULT_LOOP) -> Response:
        check_query_version(request)
        result: Response = handler(request, loop)
        return result

    async def with_path(request: Request, version: str, loop: str = DEFAULT_LOOP) -> Response:
        check_path_version(request, version)
        result: Response = handler(request, loop)
        return result

    name = path.strip("/").replace("/", "_")
    router.add_api_route(path, with_query, methods=["GET"], name=f"personalizer_{name}")
    router.add_api_route(
        "/{version}" + path, with_path, methods=["GET"], name=f"personalizer_v1_{name}"
    )


for _path, _handler in READS.items():
    _add(_path, _handler)
