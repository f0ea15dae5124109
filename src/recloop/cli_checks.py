"""Checks the long-running commands (``serve``, ``stream``) make before they start, so an
operator's mistake is one line naming the cause and an exit status, not a traceback from
whichever store happens to open first."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer
from rich.console import Console

EXIT_DATA_DIR = 2
"""The exit status of a command refused for its data dir (as a usage error)."""


def require_writable_data_dir(data_dir: Path, console: Console | None = None) -> None:
    """Exit with ``EXIT_DATA_DIR`` unless ``data_dir`` exists or can be made, and a file
    can be written in it (a read-only mount, no permission, a file in its place)."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".recloop-write-check-"):
            pass
    except OSError as exc:
        in_the_way = isinstance(exc, FileExistsError | NotADirectoryError)
        reason = "not a directory" if in_the_way else exc.strerror or type(exc).__name__
        (console or Console(stderr=True)).print(
            f"recloop: the data dir {data_dir} cannot be written ({reason}); "
            "make it writable or pass --data-dir",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_DATA_DIR) from None
