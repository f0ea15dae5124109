"""The fault matrix's CI slice: a few faults through the same harness as the benchmark
(``python -m benchmarks.faults``), each under a real HTTP load with retrying clients,
audited from the stores themselves.

Fast (embedded default): kill -9 of the pipeline child and of the whole server, a corrupt
newest model, a corrupt settings override. Slow: a full disk (tmpfs, root), and a restart
of PostgreSQL and of NATS under the cluster layout (private servers of the harness). For
each: nothing acknowledged missing, nothing logged twice or logged although refused,
every decision joined once, every model version learned each example once and the newest
all of them, and no 5xx but clean 503s (problem details, Retry-After).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from benchmarks.faults.audit import audit
from benchmarks.faults.faults import BY_NAME
from benchmarks.faults.load import LoadConfig, Sent
from benchmarks.faults.matrix import Row, run_pair

LOAD = LoadConfig(rate=25.0, seconds=6.0, threads=3)


def check(row: Row) -> None:
    assert row.applies, row.reason
    detail = f"{row.to_dict()}"
    assert row.acknowledged > 100, f"too little load to prove anything: {detail}"
    assert row.found == row.acknowledged, detail
    assert row.missing == 0, detail
    assert row.duplicated == 0, detail
    assert row.phantom == 0, detail
    assert row.unclean_5xx == 0, detail
    assert row.joined_ok, detail
    assert row.learned_ok, detail
    assert row.stream_ok is not False, detail
    assert row.ready_after_s is not None, f"never ready again: {detail}"
    assert "failed" not in row.note, detail


@pytest.mark.parametrize(
    "fault",
    ["kill9-pipeline", "kill9-server", "corrupt-newest-model", "corrupt-settings-override"],
)
def test_embedded_fault_loses_nothing(fault: str, tmp_path: Path) -> None:
    row = run_pair("embedded", BY_NAME[fault], LOAD, tmp_path)
    check(row)
    if fault == "kill9-server":  # the server was really down: clients saw it and retried
        assert row.statuses.get("conn", 0) > 0, row.statuses
    if fault == "corrupt-settings-override":
        assert "not ready" in row.note, row.note  # /readyz said why while they were bad


@pytest.mark.slow
def test_embedded_disk_full_loses_nothing(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("mounting a tmpfs needs root")
        pytest.skip("mounting a tmpfs needs root")
    check(run_pair("embedded", BY_NAME["disk-full"], LOAD, tmp_path))


@pytest.mark.slow
@pytest.mark.services
@pytest.mark.parametrize("fault", ["restart-postgres", "restart-nats"])
def test_cluster_service_restart_loses_nothing(fault: str, tmp_path: Path) -> None:
    from benchmarks.faults.cluster import close_services

    try:
        row = run_pair("cluster", BY_NAME[fault], LOAD, tmp_path)
    finally:
        close_services()
    check(row)


# -- the audit can fail: it counts what a store really holds -------------------------------
@dataclass
class Rows:
    """A backend made of rows (the audit's counting, apart from any store)."""

    log: list[tuple[str, str, str | None]]
    joined: list[tuple[int, str, float, int]]
    metas: list[tuple[int, dict[str, Any]]]
    events: list[str] = field(default_factory=list)

    def log_rows(self) -> list[tuple[str, str, str | None]]:
        return self.log

    def joined_rows(self) -> list[tuple[int, str, float, int]]:
        return self.joined

    def dropped(self) -> list[tuple[str, str]]:
        return []

    def model_metas(self) -> list[tuple[int, dict[str, Any]]]:
        return self.metas

    def stream_event_ids(self) -> list[str] | None:
        return self.events


def test_audit_counts_missing_duplicated_and_phantom_records() -> None:
    sent = Sent()
    sent.acked["decision"] |= {"a", "b", "c"}
    sent.acked["reward"] |= {"r:a:r0"}
    sent.rejected["decision"] |= {"z"}
    sent.acked["event"] |= {"b-a", "b-b"}
    backend = Rows(
        log=[
            ("decision", "a", "d:a"),
            ("decision", "b", "d:b"),
            ("decision", "z", "d:z"),  # refused, yet logged
            ("reward", "a", "r:a:r0"),
            ("reward", "a", "r:a:r0"),  # twice
        ],  # "c" acknowledged, not logged
        joined=[(1, "a", 1.0, 2), (2, "b", 0.0, 0), (3, "z", 0.0, 0)],
        metas=[
            (1, {"examples_learned": 2, "learner_offset": 2}),
            (2, {"examples_learned": 4, "learner_offset": 3}),
        ],
        events=["b-a"],
    )
    counts = audit(backend, sent)
    assert (counts.acknowledged, counts.found) == (6, 4)
    assert (counts.missing, counts.duplicated, counts.phantom) == (2, 1, 1)
    assert counts.joined_ok
    assert not counts.learned_ok  # version 2 learned an example twice
    assert not counts.ok

    backend.metas[-1] = (2, {"examples_learned": 3, "learner_offset": 3})
    backend.joined = backend.joined[:2]  # "z" logged but never joined
    assert not audit(backend, sent).joined_ok
