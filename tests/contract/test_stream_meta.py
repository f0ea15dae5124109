"""The meta keys beside the lists (the runner's status, dead letters, the ``lists`` marker)
on every recommendation store backend (SQLite, real Redis), and the rebuild they drive."""

from __future__ import annotations

from recloop.core.types import Recommendation
from recloop.stores.sqlite_stream import SqliteBehaviourLog, SqliteStreamState
from recloop.streaming import board
from recloop.streaming.embedded import EmbeddedRunner
from recloop.streaming.events import BehaviourEvent
from recloop.streaming.processor import StreamProcessor
from tests.contract import test_stream_stores

store = test_stream_stores.store  # both backends: SQLite and a real Redis


def test_meta_round_trip_and_compare_and_set(store):
    assert store.get_meta("k") is None
    assert store.swap_meta("k", b"other", b"v1") is False  # absent is not b"other"
    assert store.swap_meta("k", None, b"v1") is True
    assert store.swap_meta("k", None, b"v2") is False  # present now
    assert store.swap_meta("k", b"v1", b"v2") is True and store.get_meta("k") == b"v2"
    store.put_meta("k", b"v3")
    assert store.get_meta("k") == b"v3"


def test_no_user_id_reaches_a_meta_key(store):
    store.put_meta(board.STATUS_KEY, b"{}")
    for user in ("#meta:runner", "meta:runner", ":runner", "runner", "*popular*"):
        store.put_many([Recommendation(user, ("a",), (1.0,), 1, 1.0, "p")], 2.0)
    assert store.get_meta(board.STATUS_KEY) == b"{}"


def test_a_rebuild_left_unfinished_is_done_again(store, tmp_path):
    """A runner killed mid-rebuild (or a store lost again during one) leaves the marker at
    ``building``: the next check recomputes every user's list from the state, at the
    state version that made it, users with no new event included."""
    log = SqliteBehaviourLog(tmp_path / "events.db")
    state = SqliteStreamState(tmp_path / "state.db")
    clock = [5000.0]
    runner = EmbeddedRunner(StreamProcessor(), log, state, store, clock=lambda: clock[0])
    try:
        log.append([BehaviourEvent(f"u{i % 5}", f"i{i % 3}", "view", 1000.0 + i, f"e{i}")
                    for i in range(20)])  # fmt: skip
        runner.run_until_idle()
        assert runner.counters.rebuilds == 1  # the first check: an empty store, marked
        lists = {f"u{i}": store.get(f"u{i}")[0] for i in range(5)}
        status = board.read_status(store)
        assert status is not None and status["processed_offset"] == 20 and status["users"] == 5
        store.put_meta(board.LISTS_KEY, b"building:killed-mid-rebuild")
        clock[0] += 2.0
        assert runner.step() == 0
        assert runner.counters.rebuilds == 2 and runner.counters.rebuilt_lists == 5
        assert board.lists_ready(store)
        for user, before in lists.items():
            got = store.get(user)[0]
            assert (got.items, got.state_version) == (before.items, before.state_version)
    finally:
        runner.stop()
        state.close()
        log.close()
