"""Personalizer's administration over a recloop loop: its service configuration (read, and
update through :meth:`Loop.reconfigure`), its learning policy, its model (export and
properties). Same paths, versions and error shape as
:mod:`recloop.serving.routes.personalizer`; what recloop cannot map yet answers there with a
clear 404."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from recloop.client import Loop
from recloop.core.errors import InvalidInputError, MalformedJSONError
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


_ISO = re.compile(
    r"P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?"
    r"(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?"
)
_CLOCK = re.compile(r"(?:(?P<d>\d+)\.)?(?P<h>\d+):(?P<m>\d+):(?P<s>\d+(?:\.\d+)?)")


def parse_duration(value: object, field: str) -> float:
    """Seconds from an ISO 8601 duration ("PT10M"), a clock span ("1.00:00:00", "00:10:00")
    or a number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = value.strip() if isinstance(value, str) else ""
    match = _ISO.fullmatch(text) if text not in ("P", "PT") else None
    match = match or _CLOCK.fullmatch(text)
    if not text or match is None:
        raise InvalidInputError(f"{field}: {value!r} is not a duration (e.g. PT10M)")
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    return (
        parts.get("d", 0.0) * 86400
        + parts.get("h", 0.0) * 3600
        + parts.get("m", 0.0) * 60
        + parts.get("s", 0.0)
    )


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
        "learningMode": "Apprentice" if s.learning_mode == "apprentice" else "Online",
        "isAutoOptimizationEnabled": False,
        "latestApprenticeModeMetrics": loop.apprentice_report(),
    }


def _configuration(request: Request, loop: str) -> Response:
    return JSONResponse(service_configuration(loop_for(request, loop)))


def configuration_changes(body: Mapping[str, Any]) -> dict[str, Any]:
    """A Personalizer service configuration as recloop settings; what recloop has no
    equivalent for (log retention, auto-optimization, mirroring) is accepted and ignored."""
    changes: dict[str, Any] = {}
    if "rewardWaitTime" in body:
        changes["exp_unit_seconds"] = parse_duration(body["rewardWaitTime"], "rewardWaitTime")
    if "defaultReward" in body:
        changes["default_reward"] = body["defaultReward"]
    if "rewardAggregation" in body:
        aggregation = str(body["rewardAggregation"]).lower()
        if aggregation not in ("earliest", "sum", "last"):
            raise InvalidInputError(
                f"rewardAggregation {body['rewardAggregation']!r}: recloop aggregates "
                "earliest, sum or last"
            )
        changes["reward_aggregation"] = aggregation
    if "explorationPercentage" in body:
        changes["explorer"] = "epsilon-greedy"
        changes["epsilon"] = body["explorationPercentage"]
    if "modelExportFrequency" in body:
        changes["checkpoint_every_seconds"] = parse_duration(
            body["modelExportFrequency"], "modelExportFrequency"
        )
    if "learningMode" in body:
        mode = body["learningMode"]
        if mode not in ("Online", "Apprentice"):
            raise InvalidInputError(
                f"learningMode {mode!r} is not supported (Online or Apprentice; for logging "
                "only, use Apprentice: it logs the baseline and changes nothing shown)"
            )
        changes["learning_mode"] = mode.lower()
    return changes


async def _update_configuration(request: Request, loop: str) -> Response:
    target = loop_for(request, loop)
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise MalformedJSONError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidInputError("the service configuration must be a JSON object")
    target.reconfigure(**configuration_changes(body))
    return JSONResponse(service_configuration(target))


@router.put("/configurations/service", summary="Personalizer: update the service configuration")
async def update_configuration(request: Request, loop: str = DEFAULT_LOOP) -> Response:
    check_query_version(request)
    return await _update_configuration(request, loop)


@router.put("/{version}/configurations/service", summary="v1.0: update the configuration")
async def update_configuration_v1(
    request: Request, version: str, loop: str = DEFAULT_LOOP
) -> Response:
    check_path_version(request, version)
    return await _update_configuration(request, loop)


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
