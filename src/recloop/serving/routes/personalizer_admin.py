"""Personalizer's administration over a recloop loop: its service configuration (read, and
update through :meth:`Loop.reconfigure`), its learning policy, its model (export and
properties). Same paths, versions and error shape as
:mod:`recloop.serving.routes.personalizer`; what recloop cannot map yet answers there with a
clear 404."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from recloop.client import Loop
from recloop.core.errors import InvalidInputError, MalformedJSONError
from recloop.evaluation.experiments import LearnerConfig
from recloop.kinds.models import load_model_policy
from recloop.serving.deps import loop_for
from recloop.serving.personalizer_schemas import (
    PersonalizerPolicy,
    PersonalizerServiceConfiguration,
)
from recloop.serving.routes.personalizer_routing import PersonalizerError, add_routes

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
        if not -1e18 < value < 1e18:  # a float() of a 400-digit int would overflow
            raise InvalidInputError(f"{field}: {value!r} seconds is out of range")
        return float(value)
    text = value.strip() if isinstance(value, str) else ""
    match = _ISO.fullmatch(text) if text not in ("P", "PT") else None
    match = match or _CLOCK.fullmatch(text)
    if not text or match is None:
        raise InvalidInputError(f"{field}: {value!r} is not a duration (e.g. PT10M)")
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    seconds = (
        parts.get("d", 0.0) * 86400
        + parts.get("h", 0.0) * 3600
        + parts.get("m", 0.0) * 60
        + parts.get("s", 0.0)
    )
    if not math.isfinite(seconds):  # "PT" followed by 400 digits is infinite as a float
        raise InvalidInputError(f"{field}: {value!r} is too long a duration")
    return seconds


def iso_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


MODES = {"online": "Online", "apprentice": "Apprentice", "logging": "LoggingOnly"}
"""recloop's learning modes by Personalizer's names."""


def service_configuration(loop: Loop) -> dict[str, Any]:
    """The loop's settings in Personalizer's names."""
    s = loop.settings
    return {
        "rewardWaitTime": iso_duration(s.exp_unit_seconds),
        "defaultReward": s.default_reward,
        "rewardAggregation": s.reward_aggregation,
        "explorationPercentage": s.epsilon if s.explorer == "epsilon-greedy" else 0.0,
        "modelExportFrequency": iso_duration(s.checkpoint_every_seconds),
        "logRetentionDays": int(s.log_retention_days) if s.log_retention_days >= 0 else -1,
        "modelRetrainDays": 0,
        "learningMode": MODES[s.learning_mode],
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
        given = body["learningMode"]  # any JSON: a dict or a list is unhashable (was a 500)
        mode = {v: k for k, v in MODES.items()}.get(given) if isinstance(given, str) else None
        if mode is None:
            raise InvalidInputError(
                f"learningMode {body['learningMode']!r} is not one of {sorted(MODES.values())}"
            )
        changes["learning_mode"] = mode
    if "logRetentionDays" in body:
        days = body["logRetentionDays"]
        if isinstance(days, bool) or not isinstance(days, int | float) or (days < 0 and days != -1):
            raise InvalidInputError("logRetentionDays: a number of days, or -1 (forever)")
        changes["log_retention_days"] = float(days)
    return changes


async def _update_configuration(request: Request, loop: str) -> Response:
    target = loop_for(request, loop)
    body = await _json_object(request, "the service configuration")
    target.reconfigure(**configuration_changes(body))
    return JSONResponse(service_configuration(target))


def _policy(request: Request, loop: str) -> Response:
    return JSONResponse(_policy_doc(loop_for(request, loop)))


def _policy_doc(target: Loop) -> dict[str, Any]:
    return {"name": target.name, "arguments": target.settings.full_vw_args()}


async def _update_policy(request: Request, loop: str) -> Response:
    """New learning settings (Personalizer's VW arguments, ``--cb_explore_adf --epsilon E``
    style accepted): the loop's learner starts afresh with them and learns the joined
    history again; exploration flags become recloop's explorer."""
    target = loop_for(request, loop)
    body = await _json_object(request, "the policy")
    arguments = body.get("arguments")
    if not isinstance(arguments, str) or not arguments.strip():
        raise InvalidInputError("the policy needs its VW arguments as a string: 'arguments'")
    s = target.settings
    config = LearnerConfig(
        str(body.get("name") or target.name),
        arguments,
        explorer=s.explorer,
        epsilon=s.epsilon,
        softmax_lambda=s.softmax_lambda,
    )
    target.reconfigure(
        vw_args=config.vw_args,
        interactions=[],
        explorer=config.explorer,
        epsilon=config.epsilon,
        softmax_lambda=config.softmax_lambda,
    )
    return JSONResponse(_policy_doc(target))


def _reset_policy(request: Request, loop: str) -> Response:
    """Back to the loop's configured learning settings."""
    target = loop_for(request, loop)
    configured = target.configured_settings
    target.reconfigure(vw_args=configured.vw_args, interactions=list(configured.interactions))
    return JSONResponse(_policy_doc(target))


def _log_properties(request: Request, loop: str) -> Response:
    """The time range of the loop's event log."""
    log = loop_for(request, loop).log
    end = log.end_offset()
    if end == 0:
        return JSONResponse({"dateRange": {"from": None, "to": None}})
    first, last = log.read(0, 1), log.read(end - 1, 1)
    return JSONResponse(
        {
            "dateRange": {
                "from": iso_time(first[0].event.timestamp),
                "to": iso_time(last[-1].event.timestamp),
            }
        }
    )


async def _import_model(request: Request, loop: str) -> Response:
    """A model file becomes a new version of the loop, checked, then served (pinned)."""
    target = loop_for(request, loop)
    blob = await request.body()
    if not blob:
        raise InvalidInputError("the body must be the model file")
    load_model_policy(blob, "import")  # a corrupt or foreign model is refused here, unstored
    version = target.models.put(blob, {"kind": "imported"})
    target.activate_model(version.version)
    return Response(status_code=204)


def _delete_logs(request: Request, loop: str) -> Response:
    loop_for(request, loop).delete_logs()
    return Response(status_code=204)


def _reset_model(request: Request, loop: str) -> Response:
    loop_for(request, loop).reset_model()
    return Response(status_code=204)


async def _json_object(request: Request, what: str) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise MalformedJSONError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidInputError(f"{what} must be a JSON object")
    return body


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
    "/logs/properties": _log_properties,
}


ANSWERS: dict[str, type[BaseModel] | str] = {
    "/configurations/policy": PersonalizerPolicy,
    "/model": "application/octet-stream",
}
for _path, _handler in READS.items():
    _answer = ANSWERS.get(_path)
    add_routes(router, "GET", _path, _handler, summary=f"read {_path.strip('/')}", answer=_answer)
add_routes(
    router,
    "PUT",
    "/configurations/service",
    _update_configuration,
    200,
    "configure",
    body=PersonalizerServiceConfiguration,
)
add_routes(
    router,
    "PUT",
    "/configurations/policy",
    _update_policy,
    200,
    "new VW arguments",
    body=PersonalizerPolicy,
    answer=PersonalizerPolicy,
)
add_routes(
    router,
    "DELETE",
    "/configurations/policy",
    _reset_policy,
    200,
    "configured VW args",
    answer=PersonalizerPolicy,
)
add_routes(
    router,
    "PUT",
    "/model",
    _import_model,
    204,
    "import a model",
    body="application/octet-stream",
)
add_routes(router, "DELETE", "/model", _reset_model, 204, "reset the model")
add_routes(router, "DELETE", "/logs", _delete_logs, 204, "delete the joined examples")
