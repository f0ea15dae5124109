"""API keys and the audit log of admin actions: what is stored, and where.

A key is a random token of 256 bits shown once when it is made; the store keeps only its
SHA-256 digest. That is enough, and a password hash (bcrypt, argon2) would be wrong here:
those are slow on purpose so that a guessable password cannot be found from its hash by
trying candidates, but a 256-bit random token has no candidates to try, so slowness would
buy nothing and would cost every request (the Guard hashes the presented key on the hot
path). No salt either: tokens never repeat, and there is no dictionary to precompute.

Keys and the audit log are server-wide (not per loop), shared by every serving process
through one store: SQLite ``keys.db`` under ``data_dir`` by default, PostgreSQL tables
when ``storage_url`` names a database (as the loops' stores: ``stores/factory.py``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from recloop.core.errors import InvalidInputError
from recloop.settings import Settings
from recloop.stores.factory import _postgres_url

Scope = Literal["rank", "admin", "metrics"]
SCOPES: tuple[Scope, ...] = ("rank", "admin", "metrics")
"""rank: decisions and the behaviour stream; admin: everything (rank and metrics too);
metrics: ``/metrics`` only (a Prometheus scraper)."""
GRANTS: dict[str, frozenset[str]] = {
    "rank": frozenset({"rank"}),
    "metrics": frozenset({"metrics"}),
    "admin": frozenset(SCOPES),
}
"""What each stored scope allows."""
SETTINGS_KEY_NAME = "settings"
"""The name of ``Settings.api_key``: it has every scope; no stored key may take the name."""
KEY_PREFIX = "rk_"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
KEYS_FILE = "keys.db"


def digest(raw: str | bytes) -> bytes:
    """The stored form of a key: SHA-256 (see the module's docstring for why no more)."""
    return hashlib.sha256(raw.encode() if isinstance(raw, str) else raw).digest()


def new_key() -> str:
    """A fresh key: ``rk_`` and 256 random bits, URL-safe (fits any header)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):  # (fullmatch: a final newline does not pass)
        raise InvalidInputError(
            f"invalid key name {name[:80]!r}: 1-64 of letters, digits, '.', '_', '-'"
        )
    if name == SETTINGS_KEY_NAME:
        raise InvalidInputError(f"the name {SETTINGS_KEY_NAME!r} is the settings key's")
    return name


def check_scope(scope: str) -> Scope:
    for known in SCOPES:
        if scope == known:
            return known
    raise InvalidInputError(f"unknown scope {scope[:40]!r}; scopes: {', '.join(SCOPES)}")


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A stored key as listed: never the key itself."""

    name: str
    scope: Scope
    created: float
    revoked: float | None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One admin request that changed something (or tried to: its status says)."""

    time: float
    key: str
    method: str
    path: str
    status: int
    loop: str | None
    seq: int = 0


class KeyStore(Protocol):
    """Keys (by digest) and the audit log; safe to use from several processes at once."""

    def add(self, name: str, scope: Scope, key_digest: bytes, created: float) -> KeyInfo:
        """Store a key; ``DuplicateKeyError`` if an active key has the name."""
        ...

    def revoke(self, name: str, when: float) -> KeyInfo:
        """Revoke the active key of that name; ``UnknownKeyError`` if none."""
        ...

    def all_keys(self) -> list[KeyInfo]:
        """Every key ever stored, revoked ones too, oldest first."""
        ...

    def active(self) -> tuple[dict[bytes, tuple[str, Scope]], bool]:
        """The active keys (digest -> name, scope), and whether any key was ever stored."""
        ...

    def audit(self, entry: AuditEntry) -> None:
        """Append an entry; the oldest beyond the store's ``keep`` are deleted."""
        ...

    def audit_entries(self, limit: int, before: int | None = None) -> list[AuditEntry]:
        """Newest first; ``before``: only entries with a smaller ``seq`` (paging)."""
        ...

    def close(self) -> None: ...


def open_key_store(settings: Settings) -> KeyStore:
    """PostgreSQL when ``storage_url`` names one, else ``keys.db`` under ``data_dir``. The
    audit log keeps the newest ``audit_keep_entries`` entries."""
    url = _postgres_url(settings)
    keep = settings.audit_keep_entries
    if url:
        from recloop.stores.keys_postgres import PostgresKeyStore

        return PostgresKeyStore(url, keep)
    from recloop.stores.keys_sqlite import SqliteKeyStore

    return SqliteKeyStore(Path(settings.data_dir) / KEYS_FILE, keep, settings.durability)
