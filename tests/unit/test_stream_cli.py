"""`recloop replay` and `recloop stream` on files, in-process."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from recloop.cli import app
from recloop.settings import StreamSettings
from recloop.streaming.service import Stream

runner = CliRunner()


def test_replay_a_csv_then_run_the_stream(tmp_path):
    log = tmp_path / "events.csv"
    rows = ["user_id,item_id,behaviour,timestamp,event_id"]
    for i in range(300):
        rows.append(f"u{i % 7},i{i % 11},{'buy' if i % 5 == 0 else 'view'},{1000 + i},e{i}")
    rows.insert(50, "u1,i1,like,1000,bad1")  # unknown behaviour: reported by line
    rows.insert(80, ",i1,view,1000,bad2")  # no user
    log.write_text("\n".join(rows) + "\n")
    data = tmp_path / "data"
    out = runner.invoke(app, ["replay", str(log), "--data-dir", str(data), "--batch", "64"])
    assert out.exit_code == 0, out.output
    assert "300 accepted, 0 duplicates, 2 rejected" in out.stdout
    assert "line 51: unknown behaviour" in out.stdout and "line 81: user_id" in out.stdout
    again = runner.invoke(app, ["replay", str(log), "--data-dir", str(data), "--rate", "5000"])
    assert "0 accepted, 300 duplicates, 2 rejected" in again.stdout
    ran = runner.invoke(app, ["stream", "--data-dir", str(data), "--until-idle"])
    assert ran.exit_code == 0, ran.output
    assert "processed 300 events: 300 state updates, 300 recommendations" in ran.stdout
    with Stream(StreamSettings(), data, run=False) as s:
        body = s.recommendations("u3", k=5)
        assert body["source"] == "state"
        last_ten = [f"i{i % 11}" for i in range(300) if i % 7 == 3][-10:]
        # 11 items in all, the 10 most recent are consumed: one is left to recommend
        assert [item["id"] for item in body["items"]] == sorted(
            {f"i{j}" for j in range(11)} - set(last_ten)
        )


def test_replay_json_lines_reports_malformed_lines(tmp_path):
    log = tmp_path / "events.jsonl"
    good = {"user_id": "u", "item_id": "i", "behaviour": "view", "timestamp": 5.0}
    log.write_text(json.dumps(good) + "\n{broken\n\n" + json.dumps({**good, "item_id": "j"}))
    out = runner.invoke(app, ["replay", str(log), "--data-dir", str(tmp_path / "d")])
    assert out.exit_code == 0, out.output
    assert "2 accepted, 0 duplicates, 1 rejected" in out.stdout
    assert "line 2: malformed JSON" in out.stdout
    missing = runner.invoke(app, ["replay", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 2
