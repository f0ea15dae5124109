"""A trained deep RL agent over HTTP: served as the loop's pinned model version, registered
as a candidate policy kind, and a bad checkpoint refused with a problem response."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch)")

from recloop.cli import app
from tests.e2e.conftest import Server


def test_an_agent_serves_ranks_and_is_a_candidate_over_http(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    runner = CliRunner()
    data = tmp_path / "shop.csv"
    args = ["generate", "-o", str(data), "--events", "5000", "--users", "50", "--items", "25"]
    assert runner.invoke(app, args).exit_code == 0
    trained = runner.invoke(
        app,
        ["train", "--algo", "ddpg", "--data", str(data), "--last-n", "5", "--epochs", "1",
         "-o", str(tmp_path / "run"), "--data-dir", str(tmp_path / "data"), "--activate",
         "--no-plot"],
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    with serve(exp_unit_seconds=1.0, checkpoint_every_examples=5, agents_dir=tmp_path) as api:
        body = {
            "context": {"user_id": "u7", "recent_items": ["i3", "i4"]},
            "actions": [{"id": f"i{i}"} for i in range(8)] + [{"id": "unknown-item"}],
            # sampling is seeded by the event id: a random one explored "unknown-item" into
            # first place once in ~45 runs (epsilon 0.2 over 9 actions)
            "event_id": "agent-rank-1",
        }
        resp = api.post("/v1/rank", json=body)
        assert resp.status_code == 200, resp.text
        out = resp.json()
        assert out["policy"] == "ddpg" and out["model_version"] == "1"
        assert sum(r["probability"] for r in out["ranking"]) == pytest.approx(1.0)
        assert out["ranking"][0]["id"] != "unknown-item"  # not the explored choice here, so
        assert out["ranking"][-1]["id"] == "unknown-item"  # scored below every known item
        assert (
            api.post(f"/v1/events/{out['event_id']}/reward", json={"value": 1}).status_code == 202
        )
        spec = {"name": "ddpg-file", "kind": "agent", "params": {"path": str(tmp_path / "run")}}
        assert api.post("/v1/policies", json=spec).status_code in (200, 201)
        bad = {"name": "bad", "kind": "agent", "params": {"path": str(data)}}
        resp = api.post("/v1/policies", json=bad)
        assert resp.status_code == 422 and "not a recloop agent" in resp.json()["detail"]
        for outside in ("/etc/passwd", "../../etc/passwd", str(tmp_path.parent)):
            spec = {"name": "x", "kind": "agent", "params": {"path": outside}}
            resp = api.post("/v1/policies", json=spec)
            assert resp.status_code == 422 and "under agents_dir" in resp.json()["detail"]
