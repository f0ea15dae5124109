"""recloop as Azure AI Personalizer: Microsoft's official client (``azure-ai-personalizer``),
unchanged but for its endpoint and key, ranks, rewards and activates against a recloop
server; the same over v1.0's REST paths; Personalizer's error shape and status codes."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from azure.ai.personalizer import PersonalizerAdministrationClient, PersonalizerClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)

from recloop.core.errors import InvalidInputError
from recloop.policies.vw import VWPolicy
from recloop.serving.routes.personalizer_admin import iso_duration, parse_duration
from recloop.simulators.synthetic import SyntheticPopulation
from tests.e2e.conftest import Server

KEY = "personalizer-test-key"
API = "?api-version=2022-09-01-preview"
ACTIONS = [
    {"id": "pasta", "features": [{"cuisine": "italian", "spice": "mild"}, {"price": 12.0}]},
    {"id": "curry", "features": [{"cuisine": "indian", "spice": "hot"}, {"price": 14.0}]},
    {"id": "salad", "features": [{"cuisine": "any", "spice": "none"}, {"price": 9.0}]},
]
CONTEXT = [{"user": {"diet": "vegetarian"}}, {"time": "evening"}]


@pytest.fixture
def http(serve: Callable[..., Server]) -> Iterator[httpx.Client]:
    """A server with an API key; the client sends it as Personalizer's header."""
    with serve(api_key=KEY, exp_unit_seconds=5.0, max_body_bytes=20_000) as client:
        client.headers["Ocp-Apim-Subscription-Key"] = KEY
        yield client


def _official(http: httpx.Client, key: str = KEY, loop: str | None = None) -> PersonalizerClient:
    endpoint = str(http.base_url).rstrip("/") + (f"/loops/{loop}" if loop else "")
    return PersonalizerClient(endpoint, AzureKeyCredential(key), retry_total=0)


def _dead_letters(http: httpx.Client) -> list[dict[str, Any]]:
    letters: list[dict[str, Any]] = http.get("/v1/dead-letters", headers={"X-API-Key": KEY}).json()
    return letters


def test_the_official_client_ranks_rewards_and_activates(http: httpx.Client) -> None:
    client = _official(http)
    request = {
        "contextFeatures": CONTEXT,
        "actions": ACTIONS,
        "excludedActions": ["salad"],
        "eventId": "order-1",
    }
    answer = client.rank(request)
    assert answer["eventId"] == "order-1"
    ranking = {r["id"]: r["probability"] for r in answer["ranking"]}
    assert set(ranking) == {"pasta", "curry", "salad"} and ranking["salad"] == 0.0
    assert sum(ranking.values()) == pytest.approx(1.0)
    assert answer["rewardActionId"] in ("pasta", "curry")
    assert client.reward("order-1", {"value": 1.0}) is None  # 204

    # a retried rank (same eventId, same request) is answered from the log, not re-decided
    assert client.rank(request) == answer
    with pytest.raises(HttpResponseError) as conflict:
        client.rank({**request, "actions": ACTIONS[1:]})
    assert conflict.value.status_code == 409
    assert "already used by a different rank request" in conflict.value.message

    deferred = client.rank(
        {"contextFeatures": CONTEXT, "actions": ACTIONS, "deferActivation": True}
    )
    assert client.activate(deferred["eventId"]) is None  # 204
    generated = client.rank({"actions": ACTIONS})
    assert len(generated["eventId"]) >= 16  # no eventId given: the server makes one

    # a reward for an event nobody ranked is accepted, as Personalizer does, and kept aside
    assert client.reward("never-ranked", {"value": 1.0}) is None
    assert any(d["event_id"] == "never-ranked" for d in _dead_letters(http))

    with pytest.raises(ClientAuthenticationError) as denied:
        _official(http, key="wrong").rank(request)
    assert denied.value.status_code == 401
    assert "Ocp-Apim-Subscription-Key" in denied.value.message


def test_a_named_loop_is_an_endpoint_of_its_own(http: httpx.Client) -> None:
    with pytest.raises(HttpResponseError) as missing:
        _official(http, loop="nope").rank({"actions": ACTIONS})
    assert missing.value.status_code == 404 and "no loop named 'nope'" in missing.value.message


def test_v1_paths_over_plain_rest(http: httpx.Client) -> None:
    r = http.post("/personalizer/v1.0/rank", json={"contextFeatures": CONTEXT, "actions": ACTIONS})
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"eventId", "ranking", "rewardActionId"}
    event = body["eventId"]
    assert (
        http.post(f"/personalizer/v1.0/events/{event}/reward", json={"value": 0.5}).status_code
        == 204
    )
    assert http.post(f"/personalizer/v1.0/events/{event}/activate").status_code == 204


@pytest.mark.parametrize("raw", [b"1e308", b"1" + b"0" * 400, b"2"])
def test_personalizer_rewards_outside_the_range_are_400(http: httpx.Client, raw: bytes) -> None:
    r = http.post("/personalizer/v1.0/rank", json={"contextFeatures": CONTEXT, "actions": ACTIONS})
    event = r.json()["eventId"]
    bad = http.post(
        f"/personalizer/v1.0/events/{event}/reward",
        content=b'{"value": ' + raw + b"}",
        headers={"content-type": "application/json"},
    )
    assert bad.status_code == 400, bad.text
    assert "range" in bad.json()["error"]["message"] or "finite" in bad.text
    ok = http.post(f"/personalizer/v1.0/events/{event}/reward", json={"value": -1})
    assert ok.status_code == 204


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "says"),
    [
        ("POST", f"/personalizer/rank{API}", b"{not json", 400, "not valid JSON"),
        ("POST", f"/personalizer/rank{API}", {"actions": []}, 400, "actions"),
        ("POST", f"/personalizer/rank{API}", {"actions": [{"id": "a"}, {"id": "a"}]}, 400, "'a'"),
        ("POST", f"/personalizer/events/e1/reward{API}", {"value": "high"}, 400, "value"),
        ("POST", "/personalizer/rank?api-version=2019-01-01", {"actions": ACTIONS}, 404,
         "2022-09-01-preview"),
        ("POST", "/personalizer/rank", {"actions": ACTIONS}, 404, "no api-version"),
        ("POST", "/personalizer/v2.0/rank", {"actions": ACTIONS}, 404, "v1.0"),
        ("PUT", f"/personalizer/configurations/policy{API}", {}, 400, "arguments"),
        ("PUT", f"/personalizer/configurations/service{API}", {"rewardWaitTime": "soon"}, 400,
         "not a duration"),
        ("PUT", f"/personalizer/configurations/service{API}", {"explorationPercentage": 3}, 400,
         "epsilon"),
        # windows that would never close: accepted (200) before, and then nothing joined
        ("PUT", f"/personalizer/configurations/service{API}",
         {"rewardWaitTime": "PT99999999999999999999H"}, 400, "exp_unit_seconds"),
        ("PUT", f"/personalizer/configurations/service{API}",
         {"rewardWaitTime": "PT" + "9" * 400 + "S"}, 400, "too long"),
        ("PUT", f"/personalizer/configurations/service{API}", {"rewardWaitTime": 10**400}, 400,
         "not valid JSON"),
        ("PUT", f"/personalizer/configurations/service{API}",
         {"modelExportFrequency": "P400D"}, 400, "checkpoint_every_seconds"),
        ("PUT", f"/personalizer/configurations/service{API}", {"logRetentionDays": 10**9}, 400,
         "log_retention_days"),
        ("PUT", f"/personalizer/configurations/service{API}", {"learningMode": "Sometimes"},
         400, "is not one of"),
        ("PUT", f"/personalizer/configurations/service{API}", {"logRetentionDays": -5}, 400,
         "logRetentionDays"),
        ("GET", f"/personalizer/featureImportances{API}", None, 404, "does not implement"),
        ("GET", f"/personalizer/evaluations/nope{API}", None, 404, "no evaluation 'nope'"),
        ("PUT", f"/personalizer/evaluations/e1{API}", {"name": "e", "startTime": "2026-01-01",
         "endTime": "2025-01-01"}, 400, "endTime is before startTime"),
        ("PUT", f"/personalizer/evaluations/e2{API}", {"name": "e", "startTime": "2026-01-01",
         "endTime": "2027-01-01", "policies": [{"name": "x", "arguments": "--cover 3"}]}, 400,
         "--cover"),
        ("POST", f"/personalizer/rank{API}", {"actions": ACTIONS, "pad": "x" * 30_000}, 413,
         "exceeds the limit"),
    ],
)  # fmt: skip
def test_bad_requests_get_personalizer_errors(
    http: httpx.Client, method: str, path: str, payload: Any, status: int, says: str
) -> None:
    content = payload if isinstance(payload, bytes) else None
    r = http.request(
        method,
        path,
        content=content,
        json=None if content is not None or payload is None else payload,
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) >= {"code", "message"} and says in error["message"], error
    assert error["code"] == {400: "BadRequest", 404: "ResourceNotFound"}.get(status, error["code"])


@pytest.mark.slow
def test_the_same_simulation_learns_through_personalizer_and_v1(
    serve: Callable[..., Server],
) -> None:
    """5,000 events of the synthetic population through each API (two loops of one
    server, the same settings), then 500 more: the greedy action is the best one."""
    settings = {"exp_unit_seconds": 0.5, "checkpoint_every_examples": 200, "loops": {"azure": {}}}
    with serve(**settings) as http:
        azure = _official(http, loop="azure")
        topics = SyntheticPopulation.actions()

        def via_personalizer(ctx: dict[str, Any], i: int) -> tuple[str, str, str]:
            answer = azure.rank(
                {
                    "contextFeatures": [ctx],
                    "actions": [{"id": a["id"], "features": [a["features"]]} for a in topics],
                    "eventId": f"p-{i}",
                }
            )
            greedy = max(answer["ranking"], key=lambda r: r["probability"])["id"]
            return answer["eventId"], answer["rewardActionId"], greedy

        def reward_personalizer(event_id: str, value: float) -> None:
            azure.reward(event_id, {"value": value})

        def via_v1(ctx: dict[str, Any], i: int) -> tuple[str, str, str]:
            body = http.post(
                "/v1/rank", json={"context": ctx, "actions": topics, "event_id": f"v-{i}"}
            ).json()
            greedy = max(body["ranking"], key=lambda r: r["probability"])["id"]
            return body["event_id"], body["reward_action_id"], greedy

        def reward_v1(event_id: str, value: float) -> None:
            http.post(f"/v1/events/{event_id}/reward", json={"value": value}).raise_for_status()

        correct = {}
        for name, rank, reward in [
            ("personalizer", via_personalizer, reward_personalizer),
            ("v1", via_v1, reward_v1),
        ]:
            population = SyntheticPopulation(seed=7)
            hits = 0
            for i in range(5500):
                ctx = population.context()
                event_id, chosen, greedy = rank(ctx, i)
                value = population.reward(ctx, chosen)
                if value:
                    reward(event_id, value)
                if i == 4999:  # the last rewards' window closes, then they are learned
                    time.sleep(2.0)
                if i >= 5000:
                    hits += greedy == population.best_action(ctx)
            correct[name] = hits / 500
        assert correct["personalizer"] >= 0.95 and correct["v1"] >= 0.95, correct
        print(f"greedy-correct over the last 500 of 5,500 events: {correct}")


def test_the_administration_client_reads_configuration_policy_and_model(
    serve: Callable[..., Server],
) -> None:
    settings = {"exp_unit_seconds": 0.5, "checkpoint_every_examples": 5, "epsilon": 0.1}
    with serve(**settings) as http:
        endpoint = str(http.base_url).rstrip("/")
        admin = PersonalizerAdministrationClient(endpoint, AzureKeyCredential("any"))
        config = admin.get_service_configuration()
        assert config["rewardWaitTime"] == "PT0.5S" and config["explorationPercentage"] == 0.1
        assert config["defaultReward"] == 0.0 and config["rewardAggregation"] == "earliest"
        assert config["learningMode"] == "Online"
        assert "--cb_adf" in admin.get_policy()["arguments"]
        updated = admin.update_service_configuration(
            {
                **config,
                "explorationPercentage": 0.05,
                "rewardWaitTime": "PT2S",
                "defaultReward": -0.5,
            }
        )
        assert updated["explorationPercentage"] == 0.05 and updated["rewardWaitTime"] == "PT2S"
        assert admin.get_service_configuration() == updated
        probabilities = [
            r["probability"] for r in _official(http).rank({"actions": ACTIONS})["ranking"]
        ]
        assert max(probabilities) == pytest.approx(0.95 + 0.05 / 3)  # applied at once
        admin.update_service_configuration({**config, "rewardWaitTime": "PT0.5S"})
        apprentice = admin.update_service_configuration({"learningMode": "Apprentice"})
        assert apprentice["learningMode"] == "Apprentice"
        page = _official(http).rank_multi_slot(
            {
                "actions": ACTIONS,
                "slots": [
                    {"id": "hero", "baselineAction": "curry"},
                    {"id": "side", "baselineAction": "salad"},
                ],
            }
        )
        assert [s["rewardActionId"] for s in page["slots"]] == ["curry", "salad"]
        shown = _official(http).rank({"actions": ACTIONS})
        assert shown["rewardActionId"] == "pasta"  # the baseline: the first action
        assert {r["id"]: r["probability"] for r in shown["ranking"]}["pasta"] == 1.0
        metrics = apprentice["latestApprenticeModeMetrics"]
        assert set(metrics) >= {"numberOfEvents", "numberOfImitatedEvents", "sumOfRewards"}
        admin.update_service_configuration({"learningMode": "Online"})
        with pytest.raises(ResourceNotFoundError) as no_model:  # a stream: the client
            b"".join(admin.export_model())  # does not read the error's message
        assert no_model.value.status_code == 404
        r = http.get(f"/personalizer/model{API}")
        assert r.status_code == 404 and "no model yet" in r.json()["error"]["message"]

        client = _official(http)
        for i in range(20):
            answer = client.rank({"contextFeatures": CONTEXT, "actions": ACTIONS})
            client.reward(answer["eventId"], {"value": float(i % 2)})
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                properties = admin.get_model_properties()
                break
            except ResourceNotFoundError:
                time.sleep(0.2)
        else:
            raise AssertionError("no model version was checkpointed")
        assert properties["creationTime"] <= properties["lastModifiedTime"]
        blob = b"".join(admin.export_model())
        VWPolicy.from_bytes(blob, "exported").close()  # a VW model recloop can serve again
        logs = admin.get_log_properties()["dateRange"]
        assert logs["from"] is not None and logs["from"] <= logs["to"]
        assert admin.delete_logs() is None  # 204: the learned joined examples go

        # a model file imported becomes a version of the loop and serves, pinned
        before = {v["version"] for v in http.get("/v1/models").json()["versions"]}
        admin.import_model(io.BytesIO(blob))
        models = http.get("/v1/models").json()
        (imported,) = {
            v["version"] for v in models["versions"] if v["meta"].get("kind") == "imported"
        }
        assert imported not in before and models["pinned"] == imported == models["serving"]
        with pytest.raises(HttpResponseError) as refused:
            admin.import_model(io.BytesIO(b"not a model"))
        assert refused.value.status_code == 400
        kinds = [v["meta"].get("kind") for v in http.get("/v1/models").json()["versions"]]
        assert kinds.count("imported") == 1  # the refused file was not stored
        admin.reset_model()  # an untrained model serves; learning continues from now
        models = http.get("/v1/models").json()
        (reset,) = [v["version"] for v in models["versions"] if v["meta"].get("reset")]
        assert int(models["serving"]) >= int(reset) and models["pinned"] is None

        # new learning settings: the learner starts afresh with them; reset goes back
        policy = admin.update_policy(
            {"name": "mine", "arguments": "--cb_explore_adf --epsilon 0.1 --cb_type ips -q ::"}
        )
        assert (
            "--cb_type ips" in policy["arguments"] and "--cb_explore_adf" not in policy["arguments"]
        )
        assert admin.get_policy() == policy
        assert "--cb_type mtr" in admin.reset_policy()["arguments"]
        with pytest.raises(HttpResponseError) as bad:
            admin.update_policy({"name": "x", "arguments": "--cb_explore_adf --cover 4"})
        assert bad.value.status_code == 400 and "--cover" in bad.value.message


def test_durations_read_and_written() -> None:
    assert [parse_duration(v, "f") for v in ("PT10M", "P1DT1S", "00:10:00", "1.00:00:30", 7)] == [
        600.0,
        86401.0,
        600.0,
        86430.0,
        7.0,
    ]
    for bad in ("P", "PT", "10 minutes", "", True):
        with pytest.raises(InvalidInputError):
            parse_duration(bad, "f")


def test_iso_durations() -> None:
    assert [iso_duration(s) for s in (600, 0.5, 3661, 0, 90.25)] == [
        "PT10M",
        "PT0.5S",
        "PT1H1M1S",
        "PT0S",
        "PT1M30.25S",
    ]


def test_multi_slot_rank_reward_and_activate(http: httpx.Client) -> None:
    client = _official(http)
    request = {
        "contextFeatures": CONTEXT,
        "actions": ACTIONS,
        "slots": [
            {"id": "hero", "baselineAction": "pasta", "features": [{"size": "large"}]},
            {"id": "side", "baselineAction": "salad", "excludedActions": ["curry"]},
        ],
        "eventId": "page-1",
        "deferActivation": True,
    }
    answer = client.rank_multi_slot(request)
    assert answer["eventId"] == "page-1"
    slots = {s["id"]: s["rewardActionId"] for s in answer["slots"]}
    assert list(slots) == ["hero", "side"]
    assert slots["side"] != "curry" and slots["hero"] != slots["side"]  # one slot per action
    assert client.rank_multi_slot(request) == answer  # a retry: the logged slots again
    assert client.activate_multi_slot("page-1") is None
    reward = {"reward": [{"slotId": "hero", "value": 1.0}, {"slotId": "nope", "value": 1.0}]}
    assert client.reward_multi_slot("page-1", reward) is None
    letters = {d["event_id"] for d in _dead_letters(http)}
    assert "page-1/nope" in letters and "page-1/hero" not in letters

    bad = [
        (
            {**request, "eventId": "p2", "slots": [request["slots"][0]] * 2},
            "slot ids must be unique",
        ),
        (
            {**request, "eventId": "p3", "slots": [{"id": "x", "baselineAction": "steak"}]},
            "'steak' is not an action",
        ),
        (
            {
                **request,
                "eventId": "p4",
                "slots": [{"id": f"s{i}", "baselineAction": a["id"]} for i, a in enumerate(ACTIONS)]
                + [{"id": "extra", "baselineAction": "pasta"}],
            },
            "baselineAction of its own",
        ),
    ]
    for body, says in bad:
        with pytest.raises(HttpResponseError) as refused:
            client.rank_multi_slot(body)
        assert refused.value.status_code == 400 and says in refused.value.message


def test_an_offline_evaluation_finds_the_learnable_policy_better_than_the_baseline(
    serve: Callable[..., Server],
) -> None:
    """2,000 explored decisions of the synthetic population (adults like politics, teens
    sports, seniors food; the baseline always shows the first action, politics), then an
    evaluation over them: the learnable setting's estimate beats the baseline's, intervals
    apart, and the online policy's observed reward lies between."""
    with serve(exp_unit_seconds=0.5, checkpoint_every_examples=100) as http:
        client = _official(http)
        population = SyntheticPopulation(seed=11)
        topics = [{"id": a["id"], "features": [a["features"]]} for a in population.actions()]
        start = datetime.now(UTC)
        for _ in range(2000):
            ctx = population.context()
            answer = client.rank({"contextFeatures": [ctx], "actions": topics})
            value = population.reward(ctx, answer["rewardActionId"])
            if value:
                client.reward(answer["eventId"], {"value": value})
        time.sleep(2.0)  # the last windows close and are joined
        admin = PersonalizerAdministrationClient(
            str(http.base_url).rstrip("/"), AzureKeyCredential("any")
        )
        policies = [
            {"name": "interactions", "arguments": "--cb_adf --cb_type mtr -q CA"},
            {"name": "no-interactions", "arguments": "--cb_adf --cb_type mtr"},
        ]
        end = datetime.now(UTC)
        evaluation = {"name": "which", "startTime": start.isoformat(), "endTime": end.isoformat()}
        admin.create_evaluation("eval-1", {**evaluation, "policies": policies})
        deadline = time.monotonic() + 60
        while True:
            got = admin.get_evaluation("eval-1", start_time=start, end_time=end)
            if got["status"] != "Running" or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert got["status"] == "Succeeded", got
        results = {r["name"]: r["summary"] for r in got["content"]["value"]}
        assert set(results) == {"Online", "Baseline", "interactions", "no-interactions"}
        learned, baseline = results["interactions"], results["Baseline"]
        assert learned["confidenceInterval"][0] > baseline["confidenceInterval"][1], results
        assert baseline["expectedReward"] < results["Online"]["expectedReward"]
        assert results["Online"]["expectedReward"] < learned["confidenceInterval"][1]
        assert got["optimalPolicy"] == "interactions"
        assert [e["id"] for e in admin.list_evaluations()] == ["eval-1"]
        with pytest.raises(HttpResponseError) as again:
            admin.create_evaluation("eval-1", evaluation)
        assert again.value.status_code == 409
        admin.delete_evaluation("eval-1")
        with pytest.raises(ResourceNotFoundError):
            admin.get_evaluation("eval-1", start_time=start, end_time=end)
        print({k: round(v["expectedReward"], 3) for k, v in results.items()})
