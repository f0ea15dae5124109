"""The OpenAPI document: FastAPI's, completed with what no route can say for itself.

FastAPI documents what a route declares: its parameters, its pydantic body, its success
answer, and a 422 in FastAPI's own ``{"detail": [...]}`` shape. recloop answers more than
that, and in other shapes: every error under ``/v1`` is an RFC 9457 problem
(``application/problem+json``), every error under ``/personalizer`` is Personalizer's
``{"error": {...}}`` (and never a 422: Personalizer says 400); the Guard answers 401 and 413
before any route runs; a loop's name is looked up on every route (404); a store can be away
on any of them (503, with ``Retry-After``). Declared route by route, these would drift (a
schema fuzzer found 130 answers declared nowhere): they are declared here, once, from the
shape of each operation. What only some routes answer (409, 410, 429) stays with the route,
in its ``responses``, and gets its error shape here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from recloop.serving.personalizer_schemas import (
    PersonalizerErrorResponse,
    PersonalizerMultiSlotRankRequest,
    PersonalizerMultiSlotRankResponse,
    PersonalizerMultiSlotReward,
    PersonalizerPolicy,
    PersonalizerRankRequest,
    PersonalizerRankResponse,
    PersonalizerReward,
    PersonalizerServiceConfiguration,
)
from recloop.serving.routes.personalizer_evaluations import EvaluationRequest
from recloop.serving.routes.personalizer_routing import is_personalizer_path
from recloop.serving.schemas import JSON_VALUE, Problem, RankRequest, RewardRequest
from recloop.settings import Settings

SCHEMAS: tuple[type[BaseModel], ...] = (
    RankRequest,
    RewardRequest,
    PersonalizerRankRequest,
    PersonalizerRankResponse,
    PersonalizerReward,
    PersonalizerMultiSlotRankRequest,
    PersonalizerMultiSlotRankResponse,
    PersonalizerMultiSlotReward,
    PersonalizerServiceConfiguration,
    PersonalizerPolicy,
    EvaluationRequest,
    Problem,
    PersonalizerErrorResponse,
)
"""Models of bodies the routes parse (or answers they write) themselves: FastAPI never sees
them, the routes name them by ``$ref``."""

ERRORS = {
    400: "The body is not JSON that can be read",
    401: "Missing or wrong API key",
    403: "The API key lacks the scope this route needs",
    404: "No such loop, or no such resource",
    409: "Conflict",
    410: "Gone",
    413: "The body is over the server's max_body_bytes",
    422: "Invalid input: what is wrong, field by field",
    429: "Too many requests: try again later",
    503: "A store is unavailable just now (Retry-After), or the storage was lost",
}
PERSONALIZER_ERRORS = {
    **ERRORS,
    400: "Invalid input, or a body that is not JSON (Personalizer has no 422)",
    404: "No such loop or resource, or an API version not served",
}
PROBLEM_CONTENT = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
PERSONALIZER_CONTENT = {
    "application/json": {"schema": {"$ref": "#/components/schemas/PersonalizerErrorResponse"}}
}


def openapi_builder(app: FastAPI, settings: Settings) -> Callable[[], dict[str, Any]]:
    """``app.openapi``: the document, built once."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app, settings)
        return app.openapi_schema

    return build


def document(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """FastAPI's document of ``app``, completed for the server ``settings`` describe (its
    loops, its reward range, whether it has an API key)."""
    spec = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for model in SCHEMAS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    schemas["JsonValue"] = JSON_VALUE
    for name in ("HTTPValidationError", "ValidationError"):  # recloop never answers these
        schemas.pop(name, None)
    keyed = settings.api_key is not None
    loops = sorted(settings.loop_names())
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "loop":  # the server's loops, no other
                    parameter["schema"]["enum"] = loops
            if is_personalizer_path(path):
                responses = operation.setdefault("responses", {})
                if responses.pop("422", None) is not None or operation.get("parameters"):
                    responses.setdefault("400", {})  # Personalizer's 422 is a 400
                _declare_errors(operation, PERSONALIZER_ERRORS, PERSONALIZER_CONTENT, keyed)
                operation["security"] = [{"PersonalizerKey": []}] if keyed else []
            elif path.startswith("/v1"):
                if operation.get("parameters") or "requestBody" in operation:
                    operation.setdefault("responses", {}).setdefault("422", {})
                _declare_errors(operation, ERRORS, PROBLEM_CONTENT, keyed)
                operation["security"] = [{"ApiKey": []}] if keyed else []
    for name, field in REWARDS:
        _reward_range(schemas[name]["properties"][field], settings)
    spec["components"]["securitySchemes"] = {
        "ApiKey": {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "Required on /v1 routes when the server has API keys "
            "(RECLOOP_API_KEY, or keys made with `recloop keys add`).",
        },
        "PersonalizerKey": {
            "type": "apiKey",
            "in": "header",
            "name": "Ocp-Apim-Subscription-Key",
            "description": "Required on Personalizer routes when the server has an API key "
            "(the same key).",
        },
    }
    return spec


def _declare_errors(
    operation: dict[str, Any], texts: dict[int, str], content: dict[str, Any], keyed: bool
) -> None:
    """The errors an operation can answer, from its shape: 404 and 503 anywhere (a loop is
    looked up, a store is read), 401 when the server has a key, 400 and 413 with a body;
    and whatever was declared already (the route's own, the invalid input). Each in the
    error shape of its API."""
    responses: dict[str, Any] = operation.setdefault("responses", {})
    statuses = {404, 503}
    if keyed:
        statuses |= {401, 403}
    if "requestBody" in operation:
        statuses |= {400, 413}
    statuses |= {int(s) for s in responses if s.isdigit() and int(s) >= 400}
    for status in sorted(statuses):
        declared = responses.get(str(status), {})
        responses[str(status)] = {
            "description": declared.get("description") or texts.get(status, "Error"),
            "content": content,
        }
        if status == 503:
            responses["503"]["headers"] = {
                "Retry-After": {
                    "description": "Seconds after which the same request may succeed",
                    "schema": {"type": "integer"},
                }
            }


REWARDS = (
    ("RewardRequest", "value"),
    ("PersonalizerReward", "value"),
    ("PersonalizerSlotReward", "value"),
    ("PersonalizerServiceConfiguration", "defaultReward"),
)
"""Reward fields, whose range is a loop setting."""


def _reward_range(value: dict[str, Any], settings: Settings) -> None:
    """A reward's range is each loop's setting (reward_min, reward_max): the widest of them."""
    loops = [settings.loop(name) for name in settings.loop_names()]
    value["minimum"] = min(cfg.reward_min for cfg in loops)
    value["maximum"] = max(cfg.reward_max for cfg in loops)
    value["description"] = (
        f"{value.get('description', 'The reward.')} Within the loop's range (reward_min.."
        f"reward_max; here {value['minimum']:g}..{value['maximum']:g})."
    )
