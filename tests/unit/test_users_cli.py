"""`recloop users forget USER_ID` on a local data dir: every loop on disk and the stream."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from recloop import Loop
from recloop.cli import app
from recloop.core.clock import FakeClock
from recloop.settings import StreamSettings
from recloop.streaming.service import Stream

runner = CliRunner()


def _bytes_naming(data: Path, needle: bytes) -> list[str]:
    hits = []
    for file in sorted(data.rglob("*.db")):
        conn = sqlite3.connect(file)
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            for row in conn.execute(f"SELECT * FROM {table}"):
                if any(needle in (c.encode() if isinstance(c, str) else c)
                       for c in row if isinstance(c, str | bytes)):  # fmt: skip
                    hits.append(f"{file.name}:{table}")
        conn.close()
    return hits


def test_forget_deletes_the_user_from_every_loop_on_disk_and_the_stream(tmp_path: Path) -> None:
    data = tmp_path / "data"
    clock = FakeClock()
    for name in ("default", "shop"):  # "shop" is not configured: found on disk
        with Loop.open(data, name, start=False, clock=clock, exp_unit_seconds=5.0) as loop:
            for user in ("carol", "dave"):
                for i in range(3):
                    d = loop.rank({"user": {"id": user}}, ["a", "b"], event_id=f"{user}-{i}")
                    loop.reward(d.event_id, 1.0)
            clock.advance(6.0)
            loop.step()
    stream = Stream(StreamSettings(), data, run=False, clock=lambda: 2e9)
    assert stream.start_runner(background=False) and stream.runner is not None
    stream.ingest([{"user_id": u, "item_id": f"i{i}", "behaviour": "buy", "timestamp": 1e9 + i}
                   for u in ("carol", "dave") for i in range(2)])  # fmt: skip
    stream.runner.run_until_idle()
    stream.close()
    assert _bytes_naming(data, b"carol")

    out = runner.invoke(app, ["users", "forget", "carol", "--data-dir", str(data)])

    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["loops"]["default"]["decisions"] == 3 and report["loops"]["shop"]["joined"] == 3
    assert report["deleted"]["events"] == 2 and report["deleted"]["state"] == 1
    assert report["deleted"]["recommendations"] == 1 and report["deleted"]["rewards"] == 6
    assert _bytes_naming(data, b"carol") == []
    assert _bytes_naming(data, b"dave")
    again = json.loads(
        runner.invoke(app, ["users", "forget", "carol", "--data-dir", str(data)]).stdout
    )
    assert set(again["deleted"].values()) == {0}


def test_a_hostile_user_id_is_refused(tmp_path: Path) -> None:
    for bad in ("", "x" * 257, "a\nb", "*popular*"):
        out = runner.invoke(app, ["users", "forget", bad, "--data-dir", str(tmp_path)])
        assert out.exit_code == 2, (bad, out.output)
