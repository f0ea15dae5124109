"""Personalizer's offline evaluations, backed by recloop's off-policy evaluation.

``PUT /evaluations/{id}`` with a time range and learning settings (VW arguments) starts a job
over the loop's joined decisions in that range; ``GET /evaluations/{id}`` reports, for each
policy, the estimated average reward with its 95% interval:

* ``Online``: what the deployed policy earned (observed, no weights);
* ``Baseline``: the first non-excluded action of every request (SNIPS);
* each submitted setting (``Custom``): a VW learner trained on the range in log order with
  progressive validation (:func:`recloop.evaluation.experiments.replay_experiment`), SNIPS.

``optimalPolicy`` names the custom setting with the best estimate. Jobs run in a thread of
the serving process; their records live in the loop's state, so any server process answers
for them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from recloop.client import Loop
from recloop.core.errors import InvalidInputError
from recloop.core.types import JoinedExample, available_actions
from recloop.evaluation.experiments import LearnerConfig, replay_experiment
from recloop.evaluation.offpolicy import SNIPS
from recloop.evaluation.terms import Interval, TermSums
from recloop.serving.deps import loop_for
from recloop.serving.routes.personalizer_admin import iso_time
from recloop.serving.routes.personalizer_routing import PersonalizerError, add_routes, parse_body

log = logging.getLogger(__name__)
router = APIRouter(tags=["personalizer"])
PREFIX = "personalizer.evaluation:"


class PolicySpec(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(min_length=1, max_length=256)
    arguments: str


def _text(value: object) -> object:
    """Times as ISO 8601 text only: pydantic would read a number as seconds since 1970."""
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date-time string")
    return value


IsoTime = Annotated[
    datetime,
    BeforeValidator(_text),
    WithJsonSchema(
        {
            "type": "string",
            "anyOf": [{"format": "date-time"}, {"format": "date"}],
            "description": "ISO 8601; a date alone is its midnight, a time without zone UTC.",
        }
    ),
]


class EvaluationRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    name: str = Field(min_length=1, max_length=256)
    start_time: IsoTime = Field(alias="startTime")
    end_time: IsoTime = Field(alias="endTime")
    policies: list[PolicySpec] = Field(default_factory=list)


def _timestamp(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def _in_range(target: Loop, start: float, end: float) -> Iterator[JoinedExample]:
    for example in target.joined.iter_all():
        if start <= example.decision.timestamp <= end:
            yield example


def _result(name: str, source: str, interval: Interval, arguments: str = "") -> dict[str, Any]:
    iv = interval.to_dict()  # non-finite bounds as None
    return {
        "name": name,
        "arguments": arguments,
        "policySource": source,
        "summary": {"expectedReward": iv["value"], "confidenceInterval": [iv["low"], iv["high"]]},
    }


def evaluate(target: Loop, start: float, end: float, policies: list[PolicySpec]) -> dict[str, Any]:
    """The evaluation's content: Online, Baseline and every custom setting, from one pass
    over the range (the baseline and the observed reward are tallied as the replay reads)."""
    baseline = TermSums()
    observed = TermSums()

    def tallied() -> Iterator[JoinedExample]:
        for example in _in_range(target, start, end):
            d = example.decision
            acts = available_actions(d.actions, d.excluded)
            w = (1.0 if acts and acts[0].id == d.chosen else 0.0) / d.probability
            baseline.add(*SNIPS.row(w, example.reward), w=w)
            observed.add(example.reward)
            yield example

    configs = [
        LearnerConfig(p.name, p.arguments, epsilon=target.settings.epsilon) for p in policies
    ]
    report = replay_experiment(tallied(), configs) if configs else None
    if report is None:
        for _ in tallied():
            pass
    if observed.n == 0:
        raise InvalidInputError("no joined decisions in the evaluation's time range")
    values = [
        _result("Online", "Online", observed.normal_interval(), target.settings.full_vw_args()),
        _result("Baseline", "Baseline", baseline.normal_interval()),
    ]
    optimal = None
    if report is not None:
        by_name = {r.config.name: r for r in report.results}
        for p in policies:
            values.append(_result(p.name, "Custom", by_name[p.name].snips, p.arguments))
        optimal = report.best.config.name if report.best else None
    return {"value": values, "optimal": optimal, "n": observed.n}


MAX_RUNNING = 2
"""Evaluations one server runs at once (each a thread replaying the log): a flood of PUTs
started a thread each, without bound. More get 429."""


MAX_STORED = 1000
"""Evaluation records one loop keeps (each PUT stores one until it is deleted). More get 409
until some are deleted: before, a client could grow the state store, and every list of
evaluations, without bound."""


def new_evaluation_slots() -> threading.BoundedSemaphore:
    return threading.BoundedSemaphore(MAX_RUNNING)


def _run(
    target: Loop,
    key: str,
    record: dict[str, Any],
    start: float,
    end: float,
    policies: list[PolicySpec],
) -> None:
    try:
        content = evaluate(target, start, end, policies)
        record.update(
            status="Succeeded",
            content={
                "startTime": record["startTime"],
                "endTime": record["endTime"],
                "value": content["value"],
            },
            optimalPolicy=content["optimal"],
            description=f"{content['n']} joined decisions",
        )
    except InvalidInputError as exc:  # nothing to evaluate in the range: the caller's doing
        log.info("evaluation %r failed: %s", record["id"], exc)
        record.update(status="Failed", description=str(exc))
    except Exception as exc:  # a failed job is reported, never raised into the server
        log.exception("evaluation %r failed", record["id"])
        record.update(status="Failed", description=str(exc))
    target.joined.set_state(key, json.dumps(record))


async def _create(request: Request, loop: str) -> Response:
    target, evaluation_id = loop_for(request, loop), request.path_params["evaluation_id"]
    body: EvaluationRequest = await parse_body(request, EvaluationRequest)
    start, end = _timestamp(body.start_time), _timestamp(body.end_time)
    if end < start:
        raise InvalidInputError("endTime is before startTime")
    for p in body.policies:
        LearnerConfig(p.name, p.arguments)  # bad VW arguments fail here, with a 400
    key = PREFIX + evaluation_id
    if target.joined.get_state(key) is not None:
        raise PersonalizerError(409, "Conflict", f"evaluation {evaluation_id!r} already exists")
    if len(target.joined.states(PREFIX)) >= MAX_STORED:
        raise PersonalizerError(
            409, "Conflict", f"{MAX_STORED} evaluations are stored: delete one to add another"
        )
    record: dict[str, Any] = {
        "id": evaluation_id,
        "name": body.name,
        "startTime": iso_time(start),
        "endTime": iso_time(end),
        "creationTime": iso_time(time.time()),
        "evaluationType": "Manual",
        "status": "Running",
        "policies": [p.model_dump() for p in body.policies],
    }
    slots: threading.BoundedSemaphore = request.app.state.evaluation_slots
    if not slots.acquire(blocking=False):
        raise PersonalizerError(
            429,
            "TooManyRequests",
            f"{MAX_RUNNING} evaluations are running in this server; retry when one is done",
        )
    try:
        target.joined.set_state(key, json.dumps(record))
        threading.Thread(
            target=_run_and_release,
            args=(slots, target, key, dict(record), start, end, body.policies),
            name=f"evaluation-{evaluation_id}",
            daemon=True,
        ).start()
    except BaseException:
        slots.release()
        raise
    return JSONResponse(record)


def _run_and_release(slots: threading.BoundedSemaphore, *args: Any) -> None:
    try:
        _run(*args)
    finally:
        slots.release()


def _get(request: Request, loop: str) -> Response:
    evaluation_id = request.path_params["evaluation_id"]
    raw = loop_for(request, loop).joined.get_state(PREFIX + evaluation_id)
    if raw is None:
        raise PersonalizerError(404, "ResourceNotFound", f"no evaluation {evaluation_id!r}")
    return JSONResponse(json.loads(raw))


def _list(request: Request, loop: str) -> Response:
    states = loop_for(request, loop).joined.states(PREFIX)
    return JSONResponse({"value": [json.loads(v) for v in states.values()], "nextLink": None})


def _delete(request: Request, loop: str) -> Response:
    evaluation_id = request.path_params["evaluation_id"]
    loop_for(request, loop).joined.delete_state(PREFIX + evaluation_id)
    return Response(status_code=204)


add_routes(
    router,
    "PUT",
    "/evaluations/{evaluation_id}",
    _create,
    200,
    "create an evaluation",
    body=EvaluationRequest,
    errors={
        409: f"An evaluation with this id already exists, or {MAX_STORED} are stored",
        429: f"{MAX_RUNNING} evaluations are running in this server already",
    },
)
add_routes(router, "GET", "/evaluations/{evaluation_id}", _get, 200, "an offline evaluation")
add_routes(router, "GET", "/evaluations", _list, 200, "the offline evaluations")
add_routes(router, "DELETE", "/evaluations/{evaluation_id}", _delete, 204, "delete an evaluation")
