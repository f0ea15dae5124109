"""The stream as a Flink job gives what the embedded runner gives: from the same 100k-event
log, identical final user states and recommendation lists; and after a kill -9 mid-stream and
a restart from the newest retained checkpoint, the same again. (Needs the ``flink`` extra.)"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from recloop.settings import StreamSettings
from recloop.stores.sqlite_stream import SqliteRecommendationStore
from recloop.streaming.flink import latest_checkpoint, read_states
from recloop.streaming.service import Stream
from tests.unit.test_embedded_runner import synthetic_events

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("pyflink") is None,
        reason="apache-flink is not installed (pip install -e '.[flink]')",
    ),
]

N_EVENTS = 100_000
ROOT = Path(__file__).resolve().parents[2]
JOB = (
    "import sys; from pathlib import Path; from recloop.settings import StreamSettings; "
    "from recloop.streaming.flink import run_flink_job; "
    "restore = None if sys.argv[3] == '-' else Path(sys.argv[3]); "
    "checkpoints = None if sys.argv[2] == '-' else Path(sys.argv[2]); "
    "ttl = float(sys.argv[5]); "
    "run_flink_job(StreamSettings(ttl_seconds=ttl), Path(sys.argv[1]), bounded=True, "
    "checkpoint_dir=checkpoints, restore_from=restore, checkpoint_interval_ms=500, "
    "parallelism=int(sys.argv[4]))"
)


def _job(
    data_dir: Path,
    checkpoints: Path | None = None,
    restore: Path | None = None,
    parallelism: int = 1,
    ttl_seconds: float = StreamSettings().ttl_seconds,
) -> list[str]:
    """The bounded job in its own interpreter (and JVM), as ``recloop stream`` runs it."""
    return [sys.executable, "-c", JOB, str(data_dir), str(checkpoints or "-"),
            str(restore or "-"), str(parallelism), str(ttl_seconds)]  # fmt: skip


def _copy_log(source: Path, data_dir: Path) -> Path:
    (data_dir / "_stream").mkdir(parents=True)
    shutil.copy(source / "_stream" / "events.db", data_dir / "_stream" / "events.db")
    return data_dir


def _lists(data_dir: Path, users: list[str]) -> dict[str, Any]:
    store = SqliteRecommendationStore(data_dir / "_stream" / "recs.db")
    try:
        out = {}
        for user in users:
            found = store.get(user)
            assert found is not None, user
            rec = found[0]
            out[user] = (rec.items, rec.scores, rec.state_version)
        return out
    finally:
        store.close()


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The durable log of 100k events, as ingestion wrote it."""
    data_dir = tmp_path_factory.mktemp("logged")
    events = [e.to_dict() for e in synthetic_events(N_EVENTS, users=2000, items=500, seed=7)]
    with Stream(StreamSettings(), data_dir, run=False) as s:
        for i in range(0, N_EVENTS, 10_000):
            assert s.ingest(events[i : i + 10_000]).accepted == len(events[i : i + 10_000])
    return data_dir


@pytest.fixture(scope="module")
def embedded(logged: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The embedded runner's final user states and lists for that log."""
    data_dir = _copy_log(logged, tmp_path_factory.mktemp("embedded"))
    with Stream(StreamSettings(), data_dir, run=False) as s:
        assert s.start_runner(background=False) and s.runner is not None
        s.runner.run_until_idle()
        states = {u: orjson.loads(orjson.dumps(st.state.to_dict()))
                  for u, st in s.runner.processor.users.items()}  # fmt: skip
    return {"states": states, "lists": _lists(data_dir, sorted(states))}


def _assert_same_as_embedded(data_dir: Path, embedded: dict[str, Any]) -> None:
    offset, states, _ = read_states(data_dir)
    assert offset == N_EVENTS
    flink = {u: orjson.loads(orjson.dumps(st.to_dict())) for u, st in states.items()}
    assert sorted(flink) == sorted(embedded["states"])
    different = [u for u in flink if flink[u] != embedded["states"][u]]
    assert not different, (different[:3], [flink[u] for u in different[:1]])
    lists = _lists(data_dir, sorted(flink))
    different = [u for u in lists if lists[u] != embedded["lists"][u]]
    assert not different, (different[:3], [lists[u] for u in different[:1]])


@pytest.mark.parametrize("parallelism", [1, 2])
def test_flink_job_gives_the_embedded_runners_states_and_lists(
    logged: Path, embedded: dict[str, Any], tmp_path: Path, parallelism: int
) -> None:
    """Parallelism 1 runs both halves fused in one operator; 2 runs users keyed by user on
    two subtasks, then the global half: both must equal the embedded runner."""
    data_dir = _copy_log(logged, tmp_path / "flink")
    done = subprocess.run(_job(data_dir, parallelism=parallelism), cwd=ROOT,
                          capture_output=True, text=True, timeout=240)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_as_embedded(data_dir, embedded)


def _written_lists(data_dir: Path) -> int:
    try:
        with sqlite3.connect(data_dir / "_stream" / "recs.db", timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM recs").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_kill_9_mid_stream_and_restore_from_the_newest_checkpoint(
    logged: Path, embedded: dict[str, Any], tmp_path: Path
) -> None:
    data_dir = _copy_log(logged, tmp_path / "flink")
    checkpoints = tmp_path / "checkpoints"
    job = subprocess.Popen(_job(data_dir, checkpoints), cwd=ROOT, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        # kill once lists are being written and a checkpoint completed after that
        deadline = time.monotonic() + 120
        first: Path | None = None
        while True:
            assert job.poll() is None, "the job ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint while the job ran"
            newest = latest_checkpoint(checkpoints) if checkpoints.exists() else None
            if first is None and _written_lists(data_dir):
                first = newest or checkpoints
            elif first is not None and newest is not None and newest != first:
                break
            time.sleep(0.05)
    finally:
        os.killpg(job.pid, signal.SIGKILL)  # the client and the JVM running the job
        job.wait()
    offset, _, _ = read_states(data_dir)
    assert offset < N_EVENTS  # killed mid-stream: the end of input was not reached
    newest = latest_checkpoint(checkpoints)
    assert newest is not None
    done = subprocess.run(
        _job(data_dir, tmp_path / "checkpoints-2", newest),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_as_embedded(data_dir, embedded)


def test_users_idle_past_the_ttl_start_afresh_in_both_runners(tmp_path: Path) -> None:
    """A short TTL: users whose next event comes after it restart their state, by event
    time, identically in the embedded runner and the Flink job."""
    settings = StreamSettings(ttl_seconds=120.0)
    events = [e.to_dict() for e in synthetic_events(3_000, users=50, items=40, seed=3)]
    for i, e in enumerate(events):  # a quiet hour in the middle: everyone idles past 120 s
        if i >= 1500:
            e["timestamp"] += 3600.0
    source = tmp_path / "logged"
    with Stream(settings, source, run=False) as s:
        assert s.ingest(events).accepted == len(events)
    embedded_dir = _copy_log(source, tmp_path / "embedded")
    with Stream(settings, embedded_dir, run=False) as s:
        assert s.start_runner(background=False) and s.runner is not None
        s.runner.run_until_idle()
        want = {u: orjson.loads(orjson.dumps(st.state.to_dict()))
                for u, st in s.runner.processor.users.items()}  # fmt: skip
    assert sum(st["version"] for st in want.values()) < 3_000 - 1_000  # restarts happened
    flink_dir = _copy_log(source, tmp_path / "flink")
    done = subprocess.run(_job(flink_dir, ttl_seconds=120.0), cwd=ROOT, capture_output=True,
                          text=True, timeout=240)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    _, states, _ = read_states(flink_dir)
    got = {u: orjson.loads(orjson.dumps(st.to_dict())) for u, st in states.items()}
    assert got == want
