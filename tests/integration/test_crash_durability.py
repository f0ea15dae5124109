"""Nothing acknowledged is lost: SIGKILL a real process mid-load, restart it, audit SQLite.

Two crash tests, both with a real ``kill -9`` (the fault matrix, ``benchmarks.faults``,
injects this and other faults under a retrying load, with the same record keys):

* ``test_server_sigkill_under_http_load``: ``recloop serve`` under concurrent HTTP load is
  killed, restarted on the same data dir, and the event log, joined table and model store
  are read directly with ``sqlite3``.
* ``test_embedded_loop_survives_repeated_sigkill``: a child process drives a ``Loop``
  in-process on a fake clock (rank, reward, join, learn and checkpoint as fast as it can)
  and is killed at arbitrary points three times in a row; then the loop catches up.

The invariants, from DESIGN.md ("Nothing acknowledged is lost"):

* every acknowledged decision and reward is in the log exactly once; a request whose
  outcome the client never saw is there at most once; a rejected one is not there;
* every logged decision is joined exactly once, with exactly its logged rewards;
* the learner resumes from the offset stored with its newest model: every model version
  has ``examples_learned == learner_offset`` (joined seqs are 1, 2, 3, ... so a skip or a
  re-learn would break the equality), offsets never go back, and the newest version
  eventually covers every joined example.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from benchmarks.common import free_port
from benchmarks.faults.load import reward_key, rewards_for

from recloop import Loop
from recloop.core.clock import FakeClock

EXP_UNIT = 1.0
CHECKPOINT_EVERY = 50
N_THREADS = 6
MAX_REQUESTS_PER_THREAD = 3000  # bounded load; the kill comes long before this
LOAD_BEFORE_KILL_S = 2.5  # > exp_unit + join grace: some windows joined, some pending
ACTIONS = [
    {"id": "politics", "features": {"topic": "politics"}},
    {"id": "sports", "features": {"topic": "sports"}},
    {"id": "music", "features": {"topic": "music"}},
]


# -- what the clients sent and what came back ---------------------------------------------
@dataclass
class Sent:
    """Requests by outcome. Rewards are keyed by their dedup key ``r:<event_id>:<reward_id>``."""

    decisions_acked: set[str] = field(default_factory=set)
    decisions_unknown: set[str] = field(default_factory=set)  # connection died: maybe logged
    decisions_rejected: set[str] = field(default_factory=set)
    rewards_acked: set[str] = field(default_factory=set)
    rewards_unknown: set[str] = field(default_factory=set)
    rewards_rejected: set[str] = field(default_factory=set)

    def merge(self, other: Sent) -> None:
        for name in self.__dataclass_fields__:
            getattr(self, name).update(getattr(other, name))


# -- reading the stores directly ------------------------------------------------------------
def joined_of(loop_db: Path) -> Path:
    """The joined store next to a loop's event log (its own file since the split)."""
    return loop_db.with_name("joined.db")


def query(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(db, timeout=30)) as conn:
        return conn.execute(sql, args).fetchall()


def model_metas(models_db: Path) -> list[tuple[int, dict[str, Any]]]:
    rows = query(models_db, "SELECT version, meta FROM models ORDER BY version")
    return [(int(v), json.loads(m)) for v, m in rows]


def audit_log(
    loop_db: Path, sent: Sent, max_unacked: int, max_unacked_rewards: int | None = None
) -> tuple[set[str], Counter[str]]:
    """Acknowledged: exactly once. Outcome unknown: at most once. Rejected: absent.

    At most ``max_unacked`` decisions (and rewards) were in flight when a crash cut their
    answer off, so at most that many can be logged without an acknowledgement.
    """
    rows = query(loop_db, "SELECT kind, event_id, dedup_key FROM events")
    decisions = Counter(e for k, e, _ in rows if k == "decision")
    rewards = Counter(d for k, _, d in rows if k == "reward")
    dup_decisions = {e: n for e, n in decisions.items() if n != 1}
    dup_rewards = {d: n for d, n in rewards.items() if n != 1}
    assert not dup_decisions, f"decisions logged more than once: {dup_decisions}"
    assert not dup_rewards, f"rewards logged more than once: {dup_rewards}"
    assert None not in rewards, "every reward was sent with a reward_id"

    logged = set(decisions)
    lost = sent.decisions_acked - logged
    assert not lost, f"{len(lost)} acknowledged decisions lost, e.g. {sorted(lost)[:5]}"
    phantom = logged - sent.decisions_acked - sent.decisions_unknown
    assert not phantom, f"decisions logged that were never sent or were rejected: {phantom}"
    unacked = logged - sent.decisions_acked
    assert len(unacked) <= max_unacked, f"more unacknowledged decisions than in flight: {unacked}"

    logged_rewards = set(rewards)
    lost_r = sent.rewards_acked - logged_rewards
    assert not lost_r, f"{len(lost_r)} acknowledged rewards lost, e.g. {sorted(lost_r)[:5]}"
    phantom_r = logged_rewards - sent.rewards_acked - sent.rewards_unknown
    assert not phantom_r, f"rewards logged that were never sent or were rejected: {phantom_r}"
    unacked_r = logged_rewards - sent.rewards_acked
    if max_unacked_rewards is None:
        max_unacked_rewards = max_unacked
    assert len(unacked_r) <= max_unacked_rewards, f"unacked rewards > in flight: {unacked_r}"

    per_event: Counter[str] = Counter(e for k, e, _ in rows if k == "reward")
    return logged, per_event


def audit_joined(loop_db: Path, logged: set[str], rewards_per_event: Counter[str]) -> int:
    """Every logged decision joined exactly once, with exactly its logged rewards."""
    rows = query(
        joined_of(loop_db),
        "SELECT seq, event_id, reward, n_rewards, used_default FROM joined ORDER BY seq",
    )
    seqs = [r[0] for r in rows]
    assert seqs == list(range(1, len(rows) + 1)), "joined seqs must be 1, 2, 3, ..."
    joined = Counter(r[1] for r in rows)
    assert all(n == 1 for n in joined.values()), "a decision was joined twice"
    assert set(joined) == logged, (
        f"joined != logged: missing {sorted(logged - set(joined))[:5]}, "
        f"extra {sorted(set(joined) - logged)[:5]}"
    )
    wrong = [
        r
        for r in rows
        if r[3] != rewards_per_event[r[1]]
        or r[2] != (1.0 if r[3] else 0.0)
        or bool(r[4]) != (r[3] == 0)
    ]
    assert not wrong, f"joined rewards disagree with the log (earliest of 1.0s): {wrong[:5]}"
    # The API rejects late rewards itself (dead letters without a source offset); a dead
    # letter *with* a source offset is a logged (acknowledged) record the joiner dropped.
    dropped = query(loop_db, "SELECT reason, event_id FROM dead_letters WHERE source_offset >= 0")
    assert not dropped, f"the joiner dropped logged records: {dropped[:5]}"
    return len(rows)


def audit_models(models_db: Path, joined_count: int | None = None) -> list[tuple[int, dict]]:
    """Every version learned seqs 1..learner_offset exactly once; offsets never go back."""
    metas = model_metas(models_db)
    bad = [(v, m) for v, m in metas if m["examples_learned"] != m["learner_offset"]]
    assert not bad, f"model versions that skipped or re-learned examples: {bad[:5]}"
    offsets = [m["learner_offset"] for _, m in metas]
    assert offsets == sorted(offsets), f"the learner went back: {offsets}"
    if joined_count is not None:
        assert metas, "no model version was checkpointed"
        assert offsets[-1] == joined_count, (
            f"newest model learned to {offsets[-1]}, joined examples: {joined_count}"
        )
    return metas


def wait_for(
    check: Callable[[], bool], timeout: float, what: str, on_fail: Callable[[], str] = str
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}. {on_fail()}")
        time.sleep(0.1)


def fully_learned(loop_db: Path, models_db: Path) -> bool:
    decisions = query(loop_db, "SELECT COUNT(*) FROM events WHERE kind = 'decision'")[0][0]
    joined = query(joined_of(loop_db), "SELECT COUNT(*) FROM joined")[0][0]
    metas = model_metas(models_db)
    return joined == decisions and bool(metas) and metas[-1][1]["learner_offset"] == joined


def progress(loop_db: Path, models_db: Path) -> str:
    decisions = query(loop_db, "SELECT COUNT(*) FROM events WHERE kind = 'decision'")[0][0]
    joined = query(joined_of(loop_db), "SELECT COUNT(*) FROM joined")[0][0]
    metas = model_metas(models_db)
    return f"decisions={decisions} joined={joined} newest model={metas[-1:] or None}"


# -- a real server ------------------------------------------------------------------------
def server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECLOOP_")}
    env.update(
        PYTHONUNBUFFERED="1",
        RECLOOP_EXP_UNIT_SECONDS=str(EXP_UNIT),
        RECLOOP_CHECKPOINT_EVERY_EXAMPLES=str(CHECKPOINT_EVERY),
        RECLOOP_CHECKPOINT_EVERY_SECONDS="1.0",
    )
    return env


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:]


@contextmanager
def running_server(data_dir: Path, log: Path) -> Iterator[Server]:
    """Start ``recloop serve``, wait for /healthz; always stop it afterwards."""
    port = free_port()
    cmd = [sys.executable, "-m", "recloop.cli", "serve", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--data-dir", str(data_dir), "--log-level", "warning"]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=server_env())
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"server exited with {proc.returncode}:\n{server.tail()}"
            assert time.monotonic() < deadline, f"server never became healthy:\n{server.tail()}"
            with suppress(httpx.TransportError):
                if httpx.get(server.url + "/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.05)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def client_load(url: str, prefix: str, stop: threading.Event, sent: Sent) -> None:
    """Rank then reward, until told to stop or the server goes away (bounded)."""
    with httpx.Client(base_url=url, timeout=10) as client:
        for i in range(MAX_REQUESTS_PER_THREAD):
            if stop.is_set():
                return
            event_id = f"{prefix}-{i}"
            body = {"context": {"user": f"u{i % 11}"}, "actions": ACTIONS, "event_id": event_id}
            try:
                resp = client.post("/v1/rank", json=body)
            except httpx.TransportError:
                sent.decisions_unknown.add(event_id)
                return
            if not resp.is_success:
                sent.decisions_rejected.add(event_id)
                continue
            sent.decisions_acked.add(event_id)
            for k in range(rewards_for(i)):
                key = reward_key(event_id, f"r{k}")
                try:
                    resp = client.post(
                        f"/v1/events/{event_id}/reward", json={"value": 1.0, "reward_id": f"r{k}"}
                    )
                except httpx.TransportError:
                    sent.rewards_unknown.add(key)
                    return
                if resp.is_success:
                    sent.rewards_acked.add(key)
                else:  # e.g. 410 if a loaded server answered after the window closed
                    sent.rewards_rejected.add(key)


def test_server_sigkill_under_http_load(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    loop_db = data_dir / "default" / "loop.db"
    models_db = data_dir / "default" / "models.db"
    log = tmp_path / "server.log"
    sent = Sent()
    stop = threading.Event()
    threads: list[threading.Thread] = []
    per_thread = [Sent() for _ in range(N_THREADS)]
    try:
        # 1-2. load a real server from several clients, then kill -9 it mid-load.
        with running_server(data_dir, log) as server:
            threads = [
                threading.Thread(
                    target=client_load, args=(server.url, f"t{n}", stop, per_thread[n])
                )
                for n in range(N_THREADS)
            ]
            started = time.monotonic()
            for t in threads:
                t.start()

            def ready_to_kill() -> bool:
                if time.monotonic() - started < LOAD_BEFORE_KILL_S:
                    return False
                return bool(query(models_db, "SELECT COUNT(*) FROM models")[0][0])

            wait_for(ready_to_kill, 30, "a first model checkpoint under load", server.tail)
            assert all(t.is_alive() for t in threads), "the load ended before the kill"
            os.kill(server.proc.pid, signal.SIGKILL)
            assert server.proc.wait(timeout=10) == -signal.SIGKILL
            for t in threads:
                t.join(timeout=30)
            assert not any(t.is_alive() for t in threads)
        for s in per_thread:
            sent.merge(s)
        assert len(sent.decisions_acked) >= 50, f"too little load: {len(sent.decisions_acked)}"

        # State at the crash: some windows were still open (the joiner must replay them)
        # and the learner had checkpointed (it must resume, not restart).
        at_crash_logged = query(loop_db, "SELECT COUNT(*) FROM events WHERE kind='decision'")
        at_crash_joined = query(joined_of(loop_db), "SELECT COUNT(*) FROM joined")[0][0]
        assert at_crash_logged[0][0] > at_crash_joined, "no window was open at the crash"
        at_crash_models = audit_models(models_db)
        assert at_crash_models, "no checkpoint before the crash"

        # 3. restart on the same data dir; audit the log while it runs.
        with running_server(data_dir, log) as server:
            logged, per_event = audit_log(loop_db, sent, max_unacked=N_THREADS)
            assert sent.rewards_acked, "no reward acknowledged"

            # Retrying is safe: a decision whose answer was lost is either logged now (200)
            # or was logged before the crash (409), never twice.
            with httpx.Client(base_url=server.url, timeout=10) as client:
                for event_id in sorted(sent.decisions_unknown):
                    body = {"context": {"user": "retry"}, "actions": ACTIONS, "event_id": event_id}
                    status = client.post("/v1/rank", json=body).status_code
                    assert status == (409 if event_id in logged else 200), (event_id, status)
                    sent.decisions_acked.add(event_id)
                # and the restarted server takes new traffic
                fresh = Sent()
                stop.clear()
                client_load_bounded = threading.Thread(
                    target=client_load, args=(server.url, "after", stop, fresh)
                )
                client_load_bounded.start()
                time.sleep(0.3)
                stop.set()
                client_load_bounded.join(timeout=30)
                assert fresh.decisions_acked and not fresh.decisions_unknown
                sent.merge(fresh)
            sent.decisions_unknown.clear()  # every decision's outcome is now known
            logged, per_event = audit_log(loop_db, sent, 0, max_unacked_rewards=N_THREADS)
            assert logged == sent.decisions_acked

            # 4. all windows close (exp_unit + grace), everything is joined and learned.
            wait_for(
                lambda: fully_learned(loop_db, models_db),
                20,
                "every decision joined and learned",
                lambda: progress(loop_db, models_db) + "\n" + server.tail(),
            )
            joined_count = audit_joined(loop_db, logged, per_event)
            metas = audit_models(models_db, joined_count)
            # (compare version numbers, not counts: old versions are pruned)
            assert metas[-1][0] > at_crash_models[-1][0], "no checkpoint after the restart"
            assert server.proc.poll() is None, server.tail()
            assert "Traceback" not in log.read_text(errors="replace"), server.tail()
            print(
                f"acked decisions={len(sent.decisions_acked)} rewards={len(sent.rewards_acked)}; "
                f"at crash: logged={at_crash_logged[0][0]} joined={at_crash_joined} "
                f"learned={at_crash_models[-1][1]['learner_offset']}; "
                f"in the end: joined={joined_count} models={len(metas)}"
            )
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)


# -- the same property, embedded: a Loop on a fake clock in a child process ----------------
CHILD = """
import sys
from recloop import Loop
from recloop.core.clock import FakeClock

data_dir, prefix, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
clock = FakeClock(start)
loop = Loop.open(data_dir, start=False, clock=clock, exp_unit_seconds=1.0,
                 checkpoint_every_examples=7, checkpoint_every_seconds=0.5)
actions = ["politics", "sports", "music"]
for i in range(100_000):
    eid = f"{prefix}-{i}"
    loop.rank({"user": f"u{i % 5}"}, actions, event_id=eid)
    print("d", eid, flush=True)
    for k in range((0, 1, 1, 2)[i % 4]):
        loop.reward(eid, 1.0, reward_id=f"r{k}")
        print("r", eid, f"r{k}", flush=True)
    clock.advance(0.05)
    if i % 3 == 0:
        loop.step()  # join, learn, checkpoint: the kill may land anywhere in here
"""


def run_child_until_killed(data_dir: Path, prefix: str, start: float, kill_after: int) -> Sent:
    """Read acknowledgements from the child; SIGKILL it once ``kill_after`` decisions are in."""
    sent = Sent()
    errors = data_dir / f"child-{prefix}.log"
    with errors.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(data_dir), prefix, str(start)],
            stdout=subprocess.PIPE,
            stderr=err,
        )
    assert proc.stdout is not None
    try:
        while len(sent.decisions_acked) < kill_after:
            line = proc.stdout.readline().decode()
            assert line, f"child exited early ({proc.wait()}): {errors.read_text()[-4000:]}"
            parts = line.split()
            if parts[0] == "d":
                sent.decisions_acked.add(parts[1])
            else:
                sent.rewards_acked.add(reward_key(parts[1], parts[2]))
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
        for raw in proc.stdout.read().decode().splitlines(keepends=True):
            if not raw.endswith("\n"):
                continue  # cut off by the kill: not an acknowledgement
            parts = raw.split()
            if parts[0] == "d":
                sent.decisions_acked.add(parts[1])
            else:
                sent.rewards_acked.add(reward_key(parts[1], parts[2]))
        # the request in flight at the kill: maybe logged, never acknowledged
        last = max(int(e.rsplit("-", 1)[1]) for e in sent.decisions_acked)
        sent.decisions_unknown.add(f"{prefix}-{last + 1}")
        sent.rewards_unknown.update(reward_key(f"{prefix}-{last}", f"r{k}") for k in range(2))
        return sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_embedded_loop_survives_repeated_sigkill(tmp_path: Path) -> None:
    loop_db = tmp_path / "default" / "loop.db"
    models_db = tmp_path / "default" / "models.db"
    base = 1_700_000_000.0
    sent = Sent()
    for cycle, kill_after in enumerate((300, 170, 430)):
        sent.merge(run_child_until_killed(tmp_path, f"c{cycle}", base + 1000 * cycle, kill_after))
        audit_log(loop_db, sent, max_unacked=1 + cycle)
        audit_models(models_db)
    assert len(model_metas(models_db)) > 3

    clock = FakeClock(base + 1_000_000)
    with Loop.open(tmp_path, start=False, clock=clock, exp_unit_seconds=1.0) as loop:
        for _ in range(5):
            clock.advance(10)
            loop.step()
    logged, per_event = audit_log(loop_db, sent, max_unacked=3)
    joined_count = audit_joined(loop_db, logged, per_event)
    metas = audit_models(models_db, joined_count)
    print(f"logged={len(logged)} joined={joined_count} models={len(metas)}")


# -- acknowledged at the edge of the window ------------------------------------------------
class TickingClock:
    """Each reading is 1 ms after the previous one, as a real clock between two reads."""

    def __init__(self, start: float) -> None:
        self.t = start

    def now(self) -> float:
        self.t += 0.001
        return self.t


@pytest.mark.parametrize("kind", ["reward", "activation"])
def test_record_accepted_at_window_edge_is_joined(tmp_path: Path, kind: str) -> None:
    clock = TickingClock(1_700_000_000.0)
    with Loop.open(tmp_path, start=False, clock=clock, exp_unit_seconds=1.0) as loop:
        decision = loop.rank({}, ["a", "b"], event_id="e1", defer_activation=kind == "activation")
        clock.t = decision.timestamp + 1.0 - 0.001  # the next reading is exactly the deadline
        if kind == "reward":
            loop.reward("e1", 1.0, reward_id="r0")  # accepted: the deadline is in the window
        else:
            loop.activate("e1")  # accepted likewise
        clock.t += 10
        loop.step()
    loop_db = tmp_path / "default" / "loop.db"
    assert query(joined_of(loop_db), "SELECT event_id, n_rewards FROM joined") == [
        ("e1", 1 if kind == "reward" else 0)
    ]
    assert query(loop_db, "SELECT reason FROM dead_letters") == []
