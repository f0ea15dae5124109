"""The item catalogue over HTTP: PUT/GET/DELETE items, rank by id or raw fields, errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from recloop.cli import app
from tests.e2e.conftest import Server
from tests.e2e.test_api import metric, problem

FEATURES = {"fields": {"title": "text"}, "text_dim": 2, "text_topics": 2, "rare_min_count": 1}
ARTICLES = {
    "a1": {"title": "Senate passes the budget bill", "price": 3, "tags": ["politics"]},
    "a2": {"title": "Striker scores twice in the derby", "price": 1, "tags": ["sports"]},
    "a3": {"title": "Chef bakes a sourdough loaf", "price": 2, "tags": ["food"]},
}


def test_items_crud_and_rank_by_id(serve: Callable[..., Server]) -> None:
    with serve(exp_unit_seconds=1.0, features=FEATURES) as api:
        batch = api.post(
            "/v1/items", json={"items": [{"id": k, "fields": v} for k, v in ARTICLES.items()]}
        )
        assert batch.status_code == 200, batch.text
        assert [r["changed"] for r in batch.json()] == [True, True, True]
        same = api.put("/v1/items/a1", json={"fields": ARTICLES["a1"]})
        assert same.status_code == 200 and same.json()["changed"] is False
        item = api.get("/v1/items/a2").json()
        assert item["fields"] == ARTICLES["a2"]
        assert set(item["features"]) == {"title", "price", "tags"}

        rank = api.post(
            "/v1/rank", json={"context": {"u": "adult"}, "actions": [{"id": "a1"}, {"id": "a2"}]}
        )
        assert rank.status_code == 200, rank.text
        raw = api.post(
            "/v1/rank",
            json={
                "context": {},
                "actions": [
                    {"id": "a3"},
                    {"id": "fresh", "fields": {"title": "Minister signs the trade treaty"}},
                ],
            },
        )
        assert raw.status_code == 200, raw.text
        assert api.get("/v1/items/fresh").status_code == 200  # featurized and kept

        explained = api.get("/v1/features").json()
        kinds = {row["field"]: (row["kind"], row["source"]) for row in explained["fields"]}
        assert kinds["title"] == ("text", "spec")
        assert kinds["price"] == ("numeric", "inferred") and explained["items"] == 4

        page = api.get("/v1/items", params={"limit": 2}).json()
        assert [i["id"] for i in page["items"]] == ["a1", "a2"] and page["next"] == "a2"
        rest = api.get("/v1/items", params={"after": "a2"}).json()
        assert [i["id"] for i in rest["items"]] == ["a3", "fresh"]

        assert api.delete("/v1/items/a3").status_code == 204
        problem(api.get("/v1/items/a3"), 404)
        problem(api.delete("/v1/items/a3"), 404)


def test_bad_items_and_unknown_ids_get_problems_and_are_counted(
    serve: Callable[..., Server],
) -> None:
    with serve(exp_unit_seconds=1.0, features={**FEATURES, "catalogue": "required"}) as api:
        api.put("/v1/items/a1", json={"fields": ARTICLES["a1"]})
        unknown = problem(
            api.post("/v1/rank", json={"actions": [{"id": "a1"}, {"id": "ghost"}]}), 422
        )
        assert "'ghost'" in unknown["detail"] and unknown["type"].endswith("unknown-item")
        assert metric(api, "recloop_rejected_total", reason="unknown-item") == 1
        contradicting = problem(api.put("/v1/items/a2", json={"fields": {"price": "cheap"}}), 422)
        assert "field 'price' is numeric" in contradicting["detail"]
        assert api.get("/v1/items/a2").status_code == 404  # nothing half-written
        problem(api.put("/v1/items/a2", json={"fields": {"title": {"nested": 1}}}), 422)
        problem(
            api.put(
                "/v1/items/a2", content=b"{not json", headers={"content-type": "application/json"}
            ),
            400,
        )
        assert metric(api, "recloop_rejected_total", reason="invalid-item") == 2
        ok = api.post("/v1/rank", json={"actions": [{"id": "a1"}]})
        assert ok.status_code == 200  # and the service keeps working


def test_recloop_items_import_to_a_running_server(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    path = tmp_path / "items.jsonl"
    rows = [{"id": k, "fields": v} for k, v in ARTICLES.items()]
    rows.insert(1, {"id": "bad", "fields": {"title": "Priced in words", "price": "cheap"}})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    spec = {**FEATURES, "fields": {"title": "text", "price": "numeric"}}
    with serve(exp_unit_seconds=1.0, features=spec) as api:
        out = CliRunner().invoke(
            app, ["items", "import", str(path), "--url", str(api.base_url), "--batch", "10"]
        )
        assert out.exit_code == 1, out.output  # one refused
        assert "3 items featurized, 0 unchanged, 1 refused" in out.stdout
        assert "line 2 (bad)" in out.stdout and "is numeric" in out.stdout
        assert api.get("/v1/items/a2").json()["fields"] == ARTICLES["a2"]
        assert api.get("/v1/items/bad").status_code == 404
