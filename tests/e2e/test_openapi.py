"""The OpenAPI document says what the server answers: every path parameter, every error
status in its API's error shape, the Personalizer routes' versions and bodies. (Checked in
depth by Schemathesis in tests/e2e/test_schema_fuzz.py; these are the fast guards.)"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server

KEY = "k"
METHODS = {"get", "put", "post", "patch", "delete"}


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    server = Server(pipeline="thread", api_key=KEY, data_dir=tmp_path_factory.mktemp("data"))
    with server as client:
        yield client.get("/openapi.json", headers={"X-API-Key": KEY}).json()  # a key is needed


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def test_every_path_parameter_is_declared(spec: dict[str, Any]) -> None:
    """``{event_id}`` and ``{evaluation_id}`` of the Personalizer routes were not."""
    for path, method, operation in _operations(spec):
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"{(\w+)}", path)), (method, path)


def test_personalizer_routes_declare_their_version_and_bodies(spec: dict[str, Any]) -> None:
    personalizer = [op for op in _operations(spec) if "/personalizer" in op[0]]
    assert len(personalizer) == 84  # 21 routes, 2 styles, 2 prefixes
    for path, method, operation in personalizer:
        params = {p["name"]: p for p in operation.get("parameters", [])}
        if "{version}" in path:
            assert params["version"]["schema"]["enum"] == ["v1.0", "v1.1-preview.3"]
        else:
            assert params["api-version"]["required"] is True, (method, path)
    bodies = {
        "/personalizer/rank": "PersonalizerRankRequest",
        "/personalizer/events/{event_id}/reward": "PersonalizerReward",
        "/personalizer/multislot/rank": "PersonalizerMultiSlotRankRequest",
        "/personalizer/evaluations/{evaluation_id}": "EvaluationRequest",
        "/personalizer/configurations/service": "PersonalizerServiceConfiguration",
    }
    for path, model in bodies.items():
        method = "put" if "/evaluations/" in path or "/configurations/" in path else "post"
        body = spec["paths"][path][method]["requestBody"]["content"]["application/json"]
        assert body["schema"]["$ref"].endswith("/" + model)
        assert model in spec["components"]["schemas"]


def _error_schema(operation: dict[str, Any], status: str) -> tuple[str, str]:
    content = operation["responses"][status]["content"]
    media_type = next(iter(content))
    return media_type, content[media_type]["schema"]["$ref"].rsplit("/", 1)[-1]


def test_every_error_is_declared_in_its_apis_shape(spec: dict[str, Any]) -> None:
    """401, 404, 409, 410, 413 were declared nowhere, 422 in FastAPI's shape (not sent)."""
    for path, method, operation in _operations(spec):
        statuses = {s for s in operation["responses"] if s.isdigit() and int(s) >= 400}
        if path.startswith("/v1"):
            assert {"401", "404", "503"} <= statuses, (method, path)
            assert all(
                _error_schema(operation, s) == ("application/problem+json", "Problem")
                for s in statuses
            )
            assert operation["security"] == [{"ApiKey": []}]
        elif "/personalizer" in path:
            assert {"400", "401", "404", "503"} <= statuses and "422" not in statuses
            assert all(
                _error_schema(operation, s) == ("application/json", "PersonalizerErrorResponse")
                for s in statuses
            )
            assert operation["security"] == [{"PersonalizerKey": []}]
        if "requestBody" in operation:
            assert "413" in statuses, (method, path)
    decisions = spec["paths"]["/v1/events/{event_id}/reward"]["post"]["responses"]
    assert {"409", "410"} <= set(decisions)
    create = spec["paths"]["/personalizer/evaluations/{evaluation_id}"]["put"]["responses"]
    assert {"409", "429"} <= set(create)
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_feature_and_reward_rules_are_in_the_schemas(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    reward = schemas["RewardRequest"]["properties"]["value"]
    assert (reward["minimum"], reward["maximum"]) == (-1.0, 1.0)  # the loop's range
    context = schemas["RankRequest"]["properties"]["context"]
    assert context["propertyNames"] == {"minLength": 1}
    fields = schemas["ItemIn"]["properties"]["fields"]["additionalProperties"]["anyOf"]
    assert {"type": "object"} not in [{"type": f.get("type")} for f in fields]  # flat only


def test_without_a_key_nothing_asks_for_one(serve: Callable[..., Server]) -> None:
    with serve(pipeline="thread") as client:
        spec = client.get("/openapi.json").json()
    for _, _, operation in _operations(spec):
        assert "401" not in operation["responses"] and not operation.get("security")


def test_a_key_is_asked_for_where_it_is_checked(spec: dict[str, Any]) -> None:
    assert {"ApiKey", "PersonalizerKey"} <= set(spec["components"]["securitySchemes"])
    for route in ("/healthz", "/readyz", "/metrics"):
        assert not spec["paths"][route]["get"].get("security")


def test_metrics_are_documented_as_text(spec: dict[str, Any], serve: Callable[..., Server]) -> None:
    assert "text/plain" in spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    with serve(pipeline="thread") as client:
        r: httpx.Response = client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain")
