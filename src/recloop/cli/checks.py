"""An operator's mistake is one line naming the cause and an exit status, not a traceback:
the checks the long-running commands (``serve``, ``stream``) make before they start, and
the entry point's handling of the errors a user can act on (a typed recloop error, a
server that is not running, settings that do not validate)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from recloop.core.errors import RecloopError

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


EXIT_USER_ERROR = 2
"""A typed error the user can fix (an unknown loop, invalid settings or input), as a usage
error; a store that is away exits 1."""


def _say(message: str) -> None:
    Console(stderr=True).print(f"recloop: {message}", markup=False, highlight=False, soft_wrap=True)


def user_error(exc: BaseException) -> tuple[str, int] | None:
    """The one line and exit status for an error a user can act on; None for anything
    else (a bug keeps its traceback)."""
    import httpx
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    if isinstance(exc, RecloopError):
        text = str(exc.args[0]) if exc.args else exc.title
        return text, EXIT_USER_ERROR if 400 <= exc.status < 500 else 1
    if isinstance(exc, httpx.TransportError):
        where = "the server"
        try:
            url = exc.request.url
            where = f"{url.scheme}://{url.netloc.decode()}"
        except RuntimeError:  # no request attached
            pass
        return f"cannot reach {where} ({exc}); is it running?", EXIT_USER_ERROR
    if isinstance(exc, ValidationError):
        first: dict[str, Any] = dict(exc.errors()[0]) if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())) or exc.title
        return f"invalid settings: {where}: {first.get('msg', exc)}", EXIT_USER_ERROR
    if isinstance(exc, SettingsError):
        cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
        return f"invalid settings: {exc}{cause}", EXIT_USER_ERROR
    return None


class RecloopTyper(typer.Typer):
    """The ``recloop`` command: an error a user can act on (``user_error``) is one line on
    stderr and an exit status; a simulated run against a server that is not running was
    254 lines of traceback."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            known = user_error(exc)
            if known is None:
                raise
            _say(known[0])
            raise SystemExit(known[1]) from None
