"""`recloop users forget USER_ID`: delete everything about one user (privacy).

Locally it opens the data dir's stores itself, so it works beside a running server (each
deletion is a transaction that keeps offsets and the joiner consistent, and a stream
runner in the server is asked to forget the user in memory); with ``--url`` it calls
``DELETE /v1/users/{id}`` on a running server instead.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.console import Console

from recloop.cli.checks import RecloopTyper
from recloop.cli.stream import ConfigOpt, DataDirOpt
from recloop.core.errors import InvalidInputError
from recloop.settings import LoopSettings, Settings, load_settings

console = Console()
err_console = Console(stderr=True)
users_app = RecloopTyper(help="Users: privacy requests.")


def local_loops(settings: Settings) -> dict[str, tuple[LoopSettings, Path]]:
    """Every configured loop, and every other loop directory with a log under the data
    dir (a loop opened from the library with its own name), with the default settings."""
    loops = {
        name: (settings.loop(name), settings.data_dir / name) for name in settings.loop_names()
    }
    if settings.data_dir.is_dir():
        for child in sorted(settings.data_dir.iterdir()):
            if child.name not in loops and (child / "loop.db").exists():
                loops[child.name] = (settings.loop(), child)
    return loops


def _forget_local(settings: Settings, user_id: str, wait: float) -> dict[str, Any]:
    from recloop.privacy.forget import forget_user
    from recloop.streaming.service import Stream

    stream = (
        Stream(settings.stream, settings.data_dir, run=False) if settings.stream.enabled else None
    )
    try:
        return forget_user(user_id, local_loops(settings), stream, time.time(), wait)
    finally:
        if stream is not None:
            stream.close()


def _forget_remote(url: str, api_key: str | None, user_id: str, wait: float) -> dict[str, Any]:
    import httpx

    headers = {"x-api-key": api_key} if api_key else {}
    r = httpx.delete(
        f"{url.rstrip('/')}/v1/users/{quote(user_id, safe='')}",
        params={"wait": wait},
        headers=headers,
        timeout=wait + 120,
    )
    if r.status_code != 200:
        raise InvalidInputError(f"the server answered {r.status_code}: {r.text[:500]}")
    out: dict[str, Any] = r.json()
    return out


@users_app.command("forget")
def forget(
    user_id: Annotated[str, typer.Argument(help="The user's id, as the application sends it.")],
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    url: Annotated[
        str | None, typer.Option(help="A running server (DELETE /v1/users/ID); default: the files.")
    ] = None,
    api_key: Annotated[str | None, typer.Option(envvar="RECLOOP_API_KEY")] = None,
    wait: Annotated[
        float,
        typer.Option(min=0.0, max=60.0, help="Seconds to wait for a stream runner elsewhere."),
    ] = 10.0,
) -> None:
    """Delete the user's decisions (found by each loop's user_fields), rewards, joined
    examples, behaviour events, stream state and recommendation lists. Learned models are
    not unlearned (reset a loop's model for that). Prints the counts as JSON."""
    try:
        if url:
            report = _forget_remote(url, api_key, user_id, wait)
        else:
            report = _forget_local(load_settings(config, data_dir=data_dir), user_id, wait)
    except InvalidInputError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    console.print_json(json.dumps(report))
    if not report.get("complete", True):
        err_console.print("[yellow]the NATS scan bound was reached: run it again[/yellow]")
    if report.get("pending"):
        err_console.print(
            "[yellow]a stream runner elsewhere has not confirmed yet; it will when it runs[/yellow]"
        )
