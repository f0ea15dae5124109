"""`recloop keys add|list|revoke` and `recloop audit`: API keys and the audit log.

They open the key store the servers share (``keys.db`` under ``data_dir``, or PostgreSQL
with ``storage_url``), so they work beside running servers: a key added or revoked here
counts on every server within about a second, with no restart.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from recloop.cli.checks import RecloopTyper
from recloop.cli.stream import ConfigOpt, DataDirOpt
from recloop.core.errors import RecloopError
from recloop.settings import load_settings
from recloop.stores.keys import (
    SCOPES,
    KeyStore,
    check_name,
    check_scope,
    digest,
    new_key,
    open_key_store,
)

console = Console()
keys_app = RecloopTyper(help="API keys: scopes rank, admin, metrics; stored hashed.")


@contextmanager
def _store(config: ConfigOpt, data_dir: DataDirOpt) -> Iterator[KeyStore]:
    try:
        store = open_key_store(load_settings(config, data_dir=data_dir))
    except RecloopError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    try:
        yield store
    except RecloopError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    finally:
        store.close()


def _when(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@keys_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="A name for the key (who or what uses it).")],
    scope: Annotated[str, typer.Option(help=f"One of {', '.join(SCOPES)}.")] = "rank",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Make a key and print it: it is shown this once (only its hash is stored)."""
    with _store(config, data_dir) as store:
        raw = new_key()
        store.add(check_name(name), check_scope(scope), digest(raw), time.time())
    typer.echo(raw)


@keys_app.command("list")
def list_keys(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Every key: name, scope, created, revoked (never the key)."""
    with _store(config, data_dir) as store:
        keys = store.all_keys()
    table = Table("name", "scope", "created", "revoked")
    for key in keys:
        table.add_row(key.name, key.scope, _when(key.created), _when(key.revoked))
    console.print(table)


@keys_app.command("revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="The key's name.")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Revoke a key: every server refuses it within about a second."""
    with _store(config, data_dir) as store:
        store.revoke(name, time.time())
    console.print(f"revoked {name}")


def audit(
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="Entries to show.")] = 50,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """The audit log of admin actions, newest first."""
    with _store(config, data_dir) as store:
        entries = store.audit_entries(limit)
    table = Table("seq", "time", "key", "method", "path", "status", "loop")
    for e in entries:
        table.add_row(
            str(e.seq), _when(e.time), e.key, e.method, e.path, str(e.status), e.loop or ""
        )
    console.print(table)
