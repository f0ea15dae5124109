"""Every behaviour-log backend through one suite: SQLite (embedded) and NATS JetStream."""

from __future__ import annotations

import os
import uuid

import pytest

from recloop.bus.nats_log import NatsBehaviourLog
from recloop.core.types import BehaviourEvent
from recloop.stores.sqlite_stream import SqliteBehaviourLog

NATS_URL = os.environ.get("RECLOOP_TEST_NATS_URL", "nats://127.0.0.1:4222")


@pytest.fixture(params=["sqlite", "nats"])
def log(request, tmp_path):
    if request.param == "sqlite":
        backend = SqliteBehaviourLog(tmp_path / "events.db")
        yield backend
        backend.close()
        return
    name = f"RECLOOP_TEST_{uuid.uuid4().hex[:12].upper()}"
    try:
        backend = NatsBehaviourLog(NATS_URL, stream=name, subject=f"recloop.test.{name}",
                                   timeout=3.0)  # fmt: skip
    except Exception as exc:  # any failure to reach it is a reason to skip, given clearly
        pytest.skip(f"NATS JetStream not reachable at {NATS_URL}: {exc!r}")
    yield backend
    backend.delete_stream()
    backend.close()


def ev(i, user="u"):
    return BehaviourEvent(user, f"i{i}", "view", 1000.0 + i, f"e{i}", {"n": i} if i % 2 else {})


def test_append_assigns_increasing_offsets_and_reads_back_in_order(log):
    assert log.last_offset() == 0
    offsets = log.append([ev(i) for i in range(5)])
    assert offsets == sorted(offsets) and len(set(offsets)) == 5 and offsets[0] >= 1
    assert log.last_offset() == offsets[-1]
    rows = log.read(0, 100)
    assert [o for o, _ in rows] == offsets
    assert [e for _, e in rows] == [ev(i) for i in range(5)]
    assert log.read(offsets[1], 2) == rows[2:4]
    assert log.read(offsets[-1], 10) == []


def test_a_repeated_event_id_is_not_logged_twice(log):
    first = log.append([ev(1), ev(2)])
    again = log.append([ev(2), ev(3)])
    assert again[0] is None and again[1] is not None and again[1] > first[1]
    assert [e.event_id for _, e in log.read(0, 10)] == ["e1", "e2", "e3"]


def test_reads_continue_across_appends(log):
    log.append([ev(i) for i in range(3)])
    seen = log.read(0, 10)
    log.append([ev(i) for i in range(3, 6)])
    more = log.read(seen[-1][0], 10)
    assert [e.event_id for _, e in seen + more] == [f"e{i}" for i in range(6)]
