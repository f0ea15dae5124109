"""Every item-catalogue implementation through one suite: SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from recloop.core.protocols import ItemStore
from recloop.core.types import ItemRecord
from recloop.settings import LoopSettings
from recloop.stores.factory import open_item_store
from recloop.stores.sqlite_items import SqliteItemStore
from tests.contract.test_stores import POSTGRES_URL, _postgres_reachable

Opener = Callable[[], ItemStore]
"""Opens one more store on the same catalogue, as another process would."""


def _sqlite(tmp_path: Path) -> Opener:
    return lambda: SqliteItemStore(tmp_path / "items.db")


def _postgres(tmp_path: Path) -> Opener:
    reason = _postgres_reachable()
    if reason:
        pytest.skip(reason)
    from recloop.stores.postgres_items import PostgresItemStore

    loop = f"test-{uuid.uuid4().hex}"  # a fresh loop: the tables are shared
    return lambda: PostgresItemStore(POSTGRES_URL, loop)


BACKENDS: dict[str, Callable[[Path], Opener]] = {"sqlite": _sqlite, "postgres": _postgres}


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.services)],
)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    make = BACKENDS[request.param](tmp_path)  # one catalogue per test (skips if unreachable)
    opened: list[ItemStore] = []

    def open_same() -> ItemStore:
        store = make()
        opened.append(store)
        return store

    yield open_same
    for store in opened:
        store.close()


@pytest.fixture
def store(opener: Opener) -> ItemStore:
    return opener()


def item(item_id: str, n: float = 1.0, **fields: object) -> ItemRecord:
    return ItemRecord(
        item_id=item_id,
        content_hash=f"h-{item_id}-{n}",
        fields={"title": f"t {item_id}", "n": n, **fields},
        features={"emb": [0.1, -2.5e-8, 1e300, n], "tags": {"a": 1, "b": [True, None, "x"]}},
        times=(("published", 1_700_000_000.25), ("edited", 1_700_000_100.5)),
    )


def put(store: ItemStore, *records: ItemRecord) -> None:
    with store.writing() as w:
        w.put(records)


def test_put_get_round_trip(store: ItemStore) -> None:
    rec = item("a", 0.1, nested={"deep": {"x": [1, 2.5, {"y": "z"}]}, "ü": "ß"}, big=2**53 + 1)
    put(store, rec)
    got = store.get("a")
    assert got is not None
    assert got.item_id == "a" and got.content_hash == rec.content_hash
    assert got.fields == rec.fields and got.features == rec.features
    assert isinstance(got.features["emb"][0], float) and isinstance(got.fields["big"], int)
    assert got.times == rec.times
    assert got.seq >= 1 and got.updated_at > 0 and not got.deleted
    assert store.get("missing") is None
    with store.writing() as w:
        assert w.get("a") == got


def test_seq_increases_and_since_follows_changes_with_tombstones(store: ItemStore) -> None:
    assert store.last_seq() == 0 and store.since(0) == []
    put(store, item("a"), item("b"))
    put(store, item("c"))
    put(store, item("a", 2.0))  # replacing an item moves it to the end of the feed
    with store.writing() as w:
        assert w.delete(["b"]) == 1
    changes = store.since(0)
    assert [(r.item_id, r.deleted) for r in changes] == [
        ("c", False),
        ("a", False),
        ("b", True),
    ]
    seqs = [r.seq for r in changes]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert store.last_seq() == seqs[-1]
    assert changes[1].fields["n"] == 2.0
    assert [r.item_id for r in store.since(seqs[0])] == ["a", "b"]
    assert [r.item_id for r in store.since(0, limit=1)] == ["c"]
    assert store.since(store.last_seq()) == []


def test_delete_tombstones(store: ItemStore) -> None:
    put(store, item("a"), item("b"))
    with store.writing() as w:
        assert w.delete(["a", "missing"]) == 1
    with store.writing() as w:
        assert w.delete(["a"]) == 0
        assert w.get("a") is None
    assert store.get("a") is None and store.get("b") is not None
    assert store.count() == 1
    assert [r.item_id for r in store.items()] == ["b"]
    put(store, item("a", 3.0))  # putting it again revives it
    revived = store.get("a")
    assert revived is not None and revived.fields["n"] == 3.0 and store.count() == 2


def test_state_versions(store: ItemStore) -> None:
    assert store.state() == (0, None)
    with store.writing() as w:
        assert w.state() == (0, None)
        assert w.set_state(b"\x00first\xff") == 1
        assert w.state() == (1, b"\x00first\xff")
    assert store.state() == (1, b"\x00first\xff")
    with store.writing() as w:
        assert w.set_state(b"second") == 2
    assert store.state() == (2, b"second")


def test_failed_transaction_leaves_nothing(store: ItemStore) -> None:
    put(store, item("keep"))
    before = store.last_seq()
    with pytest.raises(RuntimeError, match="boom"), store.writing() as w:
        w.put([item("a"), item("b")])
        assert w.delete(["keep"]) == 1
        w.set_state(b"never")
        raise RuntimeError("boom")
    assert store.get("a") is None and store.get("b") is None and store.get("keep") is not None
    assert store.count() == 1 and store.state() == (0, None)
    assert store.last_seq() == before and [r.item_id for r in store.since(0)] == ["keep"]
    put(store, item("after"))  # the store is usable again
    assert store.get("after") is not None


def test_items_pages_live_items_by_id(store: ItemStore) -> None:
    ids = ["b", "B", "a", "_x", "A1", "a0", "z", "é"]
    put(store, *(item(i) for i in ids))
    with store.writing() as w:
        w.delete(["a0"])
    live = sorted(set(ids) - {"a0"})  # code-point order, whatever the database's collation
    pages: list[list[str]] = []
    after = ""
    while page := store.items(after, limit=3):
        pages.append([r.item_id for r in page])
        after = page[-1].item_id
    assert pages == [live[:3], live[3:6], live[6:]]
    assert [r.item_id for r in store.items()] == live
    assert store.items(live[-1]) == [] and store.count() == len(live)


def test_two_stores_on_one_catalogue_see_each_other(opener: Opener) -> None:
    one, two = opener(), opener()
    put(one, item("a"))
    assert two.get("a") is not None and two.count() == 1
    with two.writing() as w:
        assert w.get("a") is not None
        w.put([item("b")])
        w.set_state(b"s")
    assert one.get("b") is not None and one.state() == (1, b"s")
    with one.writing() as w:
        assert w.state() == (1, b"s")
        assert w.delete(["a"]) == 1
    assert two.get("a") is None
    assert [(r.item_id, r.deleted) for r in two.since(0)] == [("b", False), ("a", True)]
    assert one.last_seq() == two.last_seq()


def test_one_writer_at_a_time(opener: Opener) -> None:
    """A second store's write waits for the first's transaction, and its seqs follow."""
    one, two = opener(), opener()
    started, done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def write_two() -> None:
        try:
            started.set()
            with two.writing() as w:
                w.put([item("second")])
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=write_two)
    with one.writing() as w:
        w.put([item("first")])
        thread.start()
        assert started.wait(5)
        assert not done.wait(0.3), "the second writer did not wait for the first"
        w.put([item("first-again")])
    thread.join(10)
    assert not thread.is_alive() and not errors
    assert [r.item_id for r in one.since(0)] == ["first", "first-again", "second"]


@pytest.mark.services
def test_factory_opens_postgres_for_a_postgres_url(tmp_path: Path) -> None:
    reason = _postgres_reachable()
    if reason:
        pytest.skip(reason)
    from recloop.stores.postgres_items import PostgresItemStore

    name = f"loop-{uuid.uuid4().hex[:12]}"
    settings = LoopSettings(storage_url=POSTGRES_URL)
    store = open_item_store(settings, tmp_path / name)
    try:
        assert isinstance(store, PostgresItemStore) and store.loop == name
        put(store, item("a"))
        assert store.count() == 1
        assert not (tmp_path / name / "items.db").exists()
    finally:
        store.close()
    sqlite = open_item_store(LoopSettings(), tmp_path / name)
    try:
        assert isinstance(sqlite, SqliteItemStore) and sqlite.count() == 0
    finally:
        sqlite.close()
