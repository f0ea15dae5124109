"""What each route needs, by method and path (the table the Guard enforces), and how
the key table behaves when its store cannot be read."""

from __future__ import annotations

from pathlib import Path

import pytest

from recloop.core.stats import LoopStats
from recloop.serving.auth import Authenticator, access, changes_something
from recloop.settings import load_settings
from recloop.stores.keys import KEYS_FILE, digest, new_key, open_key_store

CASES = [
    ("POST", "/v1/rank", "rank"),
    ("POST", "/v1/loops/news/rank", "rank"),
    ("POST", "/v1/events/e1/reward", "rank"),
    ("POST", "/v1/loops/news/events/e1/activate", "rank"),
    ("POST", "/v1/events", "rank"),
    ("GET", "/v1/users/u1/recommendations", "rank"),
    ("GET", "/v1/rank", "admin"),  # not a decision: whatever answers it is not rank's
    ("DELETE", "/v1/users/u1", "admin"),
    ("GET", "/v1/models", "admin"),
    ("POST", "/v1/models/3/activate", "admin"),
    ("PUT", "/v1/items/i1", "admin"),
    ("GET", "/v1/dashboard", "admin"),
    ("POST", "/v1/keys", "admin"),
    ("GET", "/v1/audit", "admin"),
    ("POST", "/personalizer/rank", "rank"),
    ("POST", "/personalizer/v1.0/events/e/reward", "rank"),
    ("POST", "/loops/x/personalizer/v1.1-preview.3/multislot/events/e/activate", "rank"),
    ("POST", "/personalizer/multislot/rank", "rank"),
    ("GET", "/personalizer/rank", "admin"),
    ("PUT", "/personalizer/configurations/service", "admin"),
    ("DELETE", "/personalizer/logs", "admin"),
    ("PUT", "/personalizer/evaluations/e1", "admin"),
    ("POST", "/personalizer/rank/extra", "admin"),
    ("GET", "/metrics", "metrics"),
    ("GET", "/openapi.json", "any"),
    ("GET", "/docs", "any"),
    ("GET", "/redoc", "any"),
    ("GET", "/healthz", "open"),
    ("GET", "/readyz", "open"),
    ("GET", "/dashboard", "open"),
]


@pytest.mark.parametrize(("method", "path", "needed"), CASES)
def test_access(method: str, path: str, needed: str) -> None:
    assert access(method, path) == needed


def test_only_admin_writes_are_audited() -> None:
    assert changes_something("POST", "/v1/models/3/activate")
    assert changes_something("DELETE", "/personalizer/logs")
    assert not changes_something("GET", "/v1/models")
    assert not changes_something("POST", "/v1/rank")
    assert not changes_something("POST", "/personalizer/rank")


def _check(auth: Authenticator, key: str | None, path: str = "/v1/rank") -> str | None:
    headers = {} if key is None else {b"x-api-key": key.encode()}
    refused = auth.check({"type": "http", "method": "POST", "path": path}, headers)
    return None if refused is None else refused.kind


def test_a_key_store_that_cannot_be_read_never_opens_the_server(tmp_path: Path) -> None:
    """keys.db unreadable (here: a folder in its place) at start: only the settings key
    works, and no request is let through without one; once readable, its keys count."""
    (tmp_path / KEYS_FILE).mkdir()
    stats = LoopStats()
    auth = Authenticator(load_settings(data_dir=tmp_path, api_key="s3cret"), stats)
    auth.start()
    try:
        assert auth.store is None and stats.get("key_store_errors_total") >= 1
        assert _check(auth, None) == "unauthorized"
        assert _check(auth, "s3cret") is None
        (tmp_path / KEYS_FILE).rmdir()
        raw = new_key()
        store = open_key_store(load_settings(data_dir=tmp_path))
        store.add("shop", "rank", digest(raw), 0.0)
        store.close()
        auth.refresh()
        assert _check(auth, raw) is None
        assert _check(auth, raw, "/v1/models/latest/activate") == "forbidden"
    finally:
        auth.close()


def test_no_key_at_all_is_open(tmp_path: Path) -> None:
    auth = Authenticator(load_settings(data_dir=tmp_path), LoopStats())
    auth.start()
    try:
        assert not auth.required and _check(auth, None, "/v1/models") is None
    finally:
        auth.close()
