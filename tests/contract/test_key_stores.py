"""Every key store through one suite: SQLite and PostgreSQL (a fresh database per test,
since keys and the audit log are server-wide tables)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from recloop.core.errors import DuplicateKeyError, InvalidInputError, UnknownKeyError
from recloop.settings import load_settings
from recloop.stores.keys import (
    AuditEntry,
    KeyStore,
    check_name,
    check_scope,
    digest,
    new_key,
    open_key_store,
)
from tests.contract.test_stores import POSTGRES_URL, _postgres_reachable

Opener = Callable[[int], KeyStore]
"""Opens one more store on the same keys (as another process would), keeping ``keep``
audit entries."""


@pytest.fixture
def sqlite_opener(tmp_path: Path) -> Iterator[Opener]:
    yield lambda keep: open_key_store(load_settings(data_dir=tmp_path, audit_keep_entries=keep))


@pytest.fixture
def postgres_opener() -> Iterator[Opener]:
    reason = _postgres_reachable()
    if reason:
        pytest.skip(reason)
    import psycopg

    name = f"recloop_keys_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    yield lambda keep: open_key_store(
        load_settings(data_dir="unused", storage_url=url, audit_keep_entries=keep)
    )
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.services)])
def opener(request: pytest.FixtureRequest) -> Iterator[Opener]:
    make: Opener = request.getfixturevalue(f"{request.param}_opener")
    opened: list[KeyStore] = []

    def open_same(keep: int = 1000) -> KeyStore:
        store = make(keep)
        opened.append(store)
        return store

    yield open_same
    for store in opened:
        store.close()


def test_keys_add_list_revoke_across_processes(opener: Opener) -> None:
    one, other = opener(1000), opener(1000)
    assert one.active() == ({}, False)  # nothing stored ever: keys not required
    raw = new_key()
    info = one.add("shop", "rank", digest(raw), 100.0)
    assert (info.name, info.scope, info.created, info.revoked) == ("shop", "rank", 100.0, None)
    assert other.active() == ({digest(raw): ("shop", "rank")}, True)  # seen by the other
    with pytest.raises(DuplicateKeyError):
        other.add("shop", "admin", digest(new_key()), 101.0)
    other.add("ops", "admin", digest(new_key()), 102.0)
    revoked = other.revoke("shop", 103.0)
    assert revoked.revoked == 103.0 and revoked.scope == "rank"
    with pytest.raises(UnknownKeyError):
        one.revoke("shop", 104.0)
    table, ever = one.active()
    assert [n for n, _ in table.values()] == ["ops"] and ever
    again = new_key()
    one.add("shop", "rank", digest(again), 105.0)  # a revoked name may be used again
    assert [(k.name, k.revoked) for k in other.all_keys()] == [
        ("shop", 103.0),
        ("ops", None),
        ("shop", None),
    ]
    assert digest(again) in other.active()[0] and digest(raw) not in other.active()[0]
    for store in (one, other):  # every key revoked: still "ever" (keys stay required)
        for name in {n for n, _ in store.active()[0].values()}:
            store.revoke(name, 106.0)
    assert one.active() == ({}, True)


def test_the_audit_log_is_bounded_and_paged(opener: Opener) -> None:
    store = opener(3)
    for i in range(5):
        loop = None if i == 0 else "default"
        store.audit(AuditEntry(float(i), "ops", "POST", f"/v1/x/{i}", 200 + i, loop))
    entries = store.audit_entries(10)
    assert [e.path for e in entries] == ["/v1/x/4", "/v1/x/3", "/v1/x/2"]  # 3 kept, newest first
    assert (entries[0].key, entries[0].status, entries[0].loop, entries[0].time) == (
        "ops",
        204,
        "default",
        4.0,
    )
    older = store.audit_entries(1, before=entries[0].seq)
    assert [e.path for e in older] == ["/v1/x/3"]
    assert opener(3).audit_entries(1)[0].path == "/v1/x/4"  # another process reads it


def test_names_and_scopes_are_checked() -> None:
    for bad in ("", "settings", "a b", "x" * 65, "../etc", "ü"):
        with pytest.raises(InvalidInputError):
            check_name(bad)
    with pytest.raises(InvalidInputError):
        check_scope("root")
    assert check_scope("metrics") == "metrics" and check_name("ci-bot.1") == "ci-bot.1"
    assert new_key() != new_key() and len(digest(new_key())) == 32
