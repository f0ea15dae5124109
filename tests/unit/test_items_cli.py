"""`recloop items import`, `recloop items get` and `recloop features explain`, in-process."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from recloop import Loop
from recloop.cli import app

runner = CliRunner()
TITLES = [
    "Senate passes the budget bill after a long debate",
    "Striker scores twice as the team wins the derby",
    "Chef bakes a sourdough loaf with wild yeast",
]


def test_import_a_csv_reports_bad_lines_and_a_server_loop_serves_the_items(
    tmp_path: Path,
) -> None:
    path = tmp_path / "items.csv"
    rows = ["id,title,price,tags,published_at"]
    for i in range(30):
        rows.append(f"n{i},{TITLES[i % 3]} {i},{i * 1.5},news|daily,2026-11-{1 + i % 28:02d}")
    rows.insert(10, "n99,Bad price row,cheap,news,2026-11-01")  # contradicts numeric
    rows.insert(20, ",No id at all,1,news,2026-11-01")
    path.write_text("\n".join(rows) + "\n")
    data = tmp_path / "data"
    out = runner.invoke(
        app, ["items", "import", str(path), "--data-dir", str(data), "--batch", "8"]
    )
    assert out.exit_code == 1, out.output  # something was refused
    assert "30 items featurized, 0 unchanged, 2 refused" in out.stdout
    assert "field 'price' is numeric" in out.stdout and "line 21: no 'id' field" in out.stdout
    again = runner.invoke(app, ["items", "import", str(path), "--data-dir", str(data)])
    assert "0 items featurized, 30 unchanged, 2 refused" in again.stdout

    got = runner.invoke(app, ["items", "get", "n4", "--data-dir", str(data)])
    item = json.loads(got.stdout)
    assert item["fields"]["price"] == 6.0 and item["fields"]["tags"] == "news|daily"
    assert item["features"]["tags"] == ["news", "daily"]
    assert set(item["features"]["title"]) >= {"e0", "topic"}

    explained = runner.invoke(app, ["features", "explain", "--data-dir", str(data)])
    assert explained.exit_code == 0, explained.output
    for field, kind in [("title", "text"), ("price", "numeric"), ("tags", "tags")]:
        assert any(field in line and kind in line for line in explained.stdout.splitlines())
    assert "30 items" in explained.stdout

    with Loop.open(data, start=False) as loop:  # what was imported is what a loop serves
        features = dict(loop.rank({}, ["n4", "n2"]).actions[0].features)
        features["published_at"] = {k: v for k, v in features["published_at"].items() if k != "age"}
        assert features == item["features"]  # plus the age, added at decision time


def test_import_json_lines_and_explain_a_sample_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    lines = [
        json.dumps({"id": f"j{i}", "fields": {"title": TITLES[i % 3], "brand": f"b{i % 2}"}})
        for i in range(12)
    ]
    lines.insert(3, "{not json")
    path.write_text("\n".join(lines) + "\n")
    data = tmp_path / "data"
    sample = runner.invoke(
        app, ["features", "explain", "--data-dir", str(data), "--sample", str(path)]
    )
    assert sample.exit_code == 0, sample.output
    assert "free text" in sample.stdout and "short strings" in sample.stdout
    assert "as items.jsonl would be read" in sample.stdout
    assert not data.exists()  # a sample writes nothing (it created data/default/items.db)
    out = runner.invoke(app, ["items", "import", str(path), "--data-dir", str(data)])
    assert "12 items featurized, 0 unchanged, 1 refused" in out.stdout
    assert "line 4: malformed JSON" in out.stdout


def test_refit_fits_again_on_the_whole_catalogue(tmp_path: Path) -> None:
    data = tmp_path / "data"
    spec = {"fields": {"title": "text"}, "text_dim": 4, "text_topics": 3}
    with Loop.open(data, start=False, features=spec) as loop:
        loop.put_items([("first", {"title": TITLES[0]})])  # 1 text: too few for PCA
        loop.put_items([(f"n{i}", {"title": f"{TITLES[i % 3]} {i}"}) for i in range(30)])
        [before] = [r["fitted"] for r in loop.explain_features() if r["field"] == "title"]
        assert "random projection: PCA needs more than 4 texts, got 1" in before
        old = loop.get_item("n5")
    config = tmp_path / "recloop.toml"
    config.write_text('[features]\nfields = { title = "text" }\ntext_dim = 4\ntext_topics = 3\n')
    out = runner.invoke(app, ["items", "refit", "--data-dir", str(data), "--config", str(config)])
    assert out.exit_code == 0, out.output
    assert "31 items recomputed" in out.stdout and "PCA on 31 texts" in out.stdout
    with Loop.open(data, start=False, features=spec) as loop:
        new = loop.get_item("n5")
        assert new is not None and old is not None
        assert new.features != old.features and new.content_hash == old.content_hash
        assert loop.rank({}, ["n5", "n6"]).actions[0].features == new.features
        page = loop.list_items(after="n1", limit=3)
        assert [r.item_id for r in page] == ["n10", "n11", "n12"]
