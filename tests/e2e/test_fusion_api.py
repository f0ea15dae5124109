"""A loop whose learner is the score-fusion DDPG, over HTTP: once its first version is
served, ``POST /v1/rank`` answers with the exact probability of the reward action and what
the policy drew (``exploration``: the served weight and its density), in both the fast path
and the routed app; candidates without the predictions it ranks by are a counted 422."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from recloop.simulators.weight_shop import WeightShop
from tests.e2e.conftest import Server
from tests.e2e.test_api import metric


def _body(shop: WeightShop) -> dict[str, object]:
    return {
        "context": shop.context(),
        "actions": [{"id": a.id, "features": dict(a.features)} for a in shop.actions()],
    }


@pytest.mark.parametrize("fast_path", [True, False])
def test_a_fusion_loop_answers_with_its_draw_and_refuses_candidates_without_predictions(
    serve: Callable[..., Server], fast_path: bool
) -> None:
    shop = WeightShop(0)
    with serve(
        fast_path, learner="fusion", pipeline="thread", exp_unit_seconds=0.2,
        join_grace_seconds=0.0, checkpoint_every_seconds=0.1,
    ) as api:  # fmt: skip
        deadline = time.monotonic() + 20
        while True:
            answer = api.post("/v1/rank", json=_body(shop))
            assert answer.status_code == 200, answer.text
            body = answer.json()
            if body["policy"] == "fusion":
                break
            assert "exploration" not in body  # the default policy draws nothing itself
            api.post(f"/v1/events/{body['event_id']}/reward", json={"value": 0.1})
            assert time.monotonic() < deadline, "the first fusion version was never served"
            time.sleep(0.05)
        # the decisions the default policy served carry no weight: skipped, and visible
        assert metric(api, "recloop_learner_agent_skipped_without_weight", loop="default") > 0
        drawn = body["exploration"]
        assert set(drawn) == {"weight", "density"} and 0.0 <= drawn["weight"] <= 4.0
        lead = body["ranking"][0]
        assert lead["id"] == body["reward_action_id"] and 0.0 < lead["probability"] <= 1.0
        assert sum(r["probability"] for r in body["ranking"]) == pytest.approx(1.0)

        before = metric(api, "recloop_rejected_total", loop="default", reason="invalid-input")
        bad = _body(shop)
        bad["actions"][0]["features"].pop("click")  # type: ignore[index]
        refused = api.post("/v1/rank", json=bad)
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "click" in refused.json()["detail"]
        after = metric(api, "recloop_rejected_total", loop="default", reason="invalid-input")
        assert after == before + 1
