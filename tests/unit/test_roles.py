"""A serving Loop and a pipeline Loop on the same data, as `recloop serve` runs them."""

from __future__ import annotations

from pathlib import Path

import pytest

from recloop import Loop
from recloop.core.clock import FakeClock
from recloop.core.errors import UnknownPolicyError
from recloop.learning.lease import LeaseBusyError
from recloop.settings import LoopSettings

ACTIONS = ["a", "b", "c"]


def test_serve_and_pipeline_roles_share_models_evaluations_and_counters(tmp_path: Path) -> None:
    clock = FakeClock()
    settings = LoopSettings(exp_unit_seconds=1.0, checkpoint_every_examples=10)
    server = Loop(settings, tmp_path, clock=clock, role="serve")
    pipeline = Loop(settings, tmp_path, clock=clock, role="pipeline")
    try:
        assert server.pipeline is None and pipeline.pipeline is not None
        server.register_policy("always-b", "fixed", {"action_id": "b"})
        for i in range(20):
            d = server.rank({"i": i % 3}, ACTIONS, event_id=f"e{i}")
            server.reward(d.event_id, 1.0 if d.chosen == "b" else 0.0)
        clock.advance(2)
        assert pipeline.step() == 20
        assert server.model_version == "default"
        server.step()  # picks up the new model and the published figures
        assert server.model_version == "1"
        report = server.evaluations()
        assert report["examples"] == 20
        assert [c["name"] for c in report["candidates"]] == ["always-b"]
        assert report["candidates"][0]["n"] == 20
        assert server.stats.get("joins_total") == 20
        assert server.stats.get("decisions_total") == 20
        server.unregister_policy("always-b")
        with pytest.raises(UnknownPolicyError):
            server.unregister_policy("always-b")
        pipeline.step()
        server.step()
        assert server.evaluations()["candidates"] == []
    finally:
        pipeline.close()
        server.close()


def test_only_one_pipeline_per_loop(tmp_path: Path) -> None:
    first = Loop(LoopSettings(), tmp_path)
    try:
        with pytest.raises(LeaseBusyError, match="another process runs the pipeline"):
            Loop(LoopSettings(lease_wait_seconds=0.1), tmp_path, role="pipeline")
        Loop(LoopSettings(), tmp_path, role="serve").close()  # serving needs no lease
    finally:
        first.close()
    Loop(LoopSettings(lease_wait_seconds=0), tmp_path).close()  # released on close


def test_counters_of_dead_workers_are_dropped_and_closed_workers_remove_theirs(
    tmp_path: Path,
) -> None:
    import os
    import socket
    import subprocess

    import orjson

    from recloop.learning.sharing import SERVE_STATS_PREFIX

    settings = LoopSettings(exp_unit_seconds=1.0)
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer exists on this host
    host = socket.gethostname()
    worker = Loop(settings, tmp_path, role="serve")
    other = Loop(settings, tmp_path, role="serve")
    try:
        worker.joined.set_state(
            f"{SERVE_STATS_PREFIX}{host}:{dead.pid}:abc",
            orjson.dumps({"counters": {"decisions_total": 99.0}}).decode(),
        )
        worker.rank({}, ["a", "b"])
        other.rank({}, ["a", "b"])
        other.step()  # publishes its own counters
        worker.step()
        assert worker.stats.get("decisions_total") == 2  # own + other; the dead row dropped
        keys = set(worker.joined.states(SERVE_STATS_PREFIX))
        assert f"{SERVE_STATS_PREFIX}{host}:{dead.pid}:abc" not in keys
        assert len(keys) == 2
        assert all(k.startswith(f"{SERVE_STATS_PREFIX}{host}:{os.getpid()}:") for k in keys)
    finally:
        other.close()
        worker.close()
    assert Loop(settings, tmp_path, role="serve").joined.states(SERVE_STATS_PREFIX) == {}


def test_a_busy_lease_leaks_no_connections(tmp_path: Path) -> None:
    import os

    first = Loop(LoopSettings(), tmp_path)
    try:

        def attempts(n: int) -> int:
            for _ in range(n):  # what a standby pipeline does, once a second
                with pytest.raises(LeaseBusyError):
                    Loop(LoopSettings(lease_wait_seconds=0), tmp_path, role="pipeline")
            return len(os.listdir("/proc/self/fd"))

        warmed_up = attempts(5)
        assert attempts(20) <= warmed_up  # no descriptor left behind per attempt
    finally:
        first.close()
