"""kill -9 the embedded stream runner mid-replay, restart it: the final state and the
recommendations equal those of an uninterrupted run (exactly-once effect on state)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from recloop.settings import StreamSettings
from recloop.stores.sqlite_stream import SqliteStreamState
from recloop.streaming.service import Stream
from tests.unit.test_embedded_runner import synthetic_events

N_EVENTS = 100_000


def _ingest(data_dir: Path, events) -> None:
    with Stream(StreamSettings(), data_dir, run=False) as s:
        for i in range(0, len(events), 5000):
            report = s.ingest([e.to_dict() for e in events[i : i + 5000]])
            assert report.accepted == len(events[i : i + 5000])


def _stream_cmd(data_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "recloop.cli", "stream", "--data-dir", str(data_dir), *extra]


def _final(data_dir: Path):
    state = SqliteStreamState(data_dir / "_stream" / "state.db")
    offset, users, meta = state.load()
    state.close()
    conn = sqlite3.connect(data_dir / "_stream" / "recs.db")
    recs = {}
    for user, version, body in conn.execute("SELECT user_id, version, body FROM recs"):
        b = orjson.loads(body)
        if user != "*popular*":
            recs[user] = (version, b["items"], b["scores"])
    conn.close()
    return offset, users, meta["popularity"], recs


@pytest.mark.slow
def test_kill_9_mid_replay_then_resume_equals_uninterrupted(tmp_path):
    events = synthetic_events(N_EVENTS, users=2000, items=500, seed=7)
    env = {**os.environ, "RECLOOP_STREAM__SNAPSHOT_EVERY_EVENTS": "7000"}

    whole = tmp_path / "whole"
    _ingest(whole, events)
    subprocess.run(_stream_cmd(whole, "--until-idle"), check=True, env=env, timeout=300,
                   capture_output=True)  # fmt: skip

    crashed = tmp_path / "crashed"
    _ingest(crashed, events)
    proc = subprocess.Popen(_stream_cmd(crashed), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    state_db = crashed / "_stream" / "state.db"
    killed_at = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if state_db.exists():
            try:
                killed_at = SqliteStreamState(state_db).load()[0]
            except sqlite3.OperationalError:
                killed_at = 0
            if killed_at >= 20_000:
                break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert 20_000 <= killed_at < N_EVENTS, killed_at  # really mid-stream
    subprocess.run(_stream_cmd(crashed, "--until-idle"), check=True, env=env, timeout=300,
                   capture_output=True)  # fmt: skip

    a, b = _final(whole), _final(crashed)
    assert a[0] == b[0] == N_EVENTS
    assert a[1] == b[1]  # every user's state (settled part and pending events)
    assert a[2] == b[2]  # popularity
    assert a[3] == b[3]  # every recommendation list, with its state version
    assert len(a[1]) == 2000
