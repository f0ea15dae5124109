"""`recloop replay` (feed a behaviour log into the stream) and `recloop stream` (run it).

`recloop stream --runner flink` runs the stream as a PyFlink job (the ``flink`` extra) on a
local MiniCluster in a child JVM: it copies the durable log into ``DATA_DIR/_stream/spool``
and the job reads it from there (``--until-idle``: what is logged now, then stop; otherwise
it keeps going, checkpointing to ``--checkpoint-dir`` and resuming from the newest retained
checkpoint on the next start). On a real Flink cluster (the spool and SQLite files on
storage every TaskManager sees, or Redis for the lists), feed the spool beside the server
and submit the same job with ``flink run``::

    python -m recloop.streaming.flink --spool-only --data-dir /shared/data &
    flink run -pyexec /opt/venv/bin/python \\
        -py "$(python -c 'import recloop.streaming.flink.job as m; print(m.__file__)')" \\
        --data-dir /shared/data --checkpoint-dir /shared/checkpoints
    # after a failure: flink run -s /shared/checkpoints/<job-id>/chk-N -py ... (same args)

See ``recloop.streaming.flink`` for the pipeline and its guarantees.
"""

from __future__ import annotations

import contextlib
import csv
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from recloop.cli.checks import require_writable_data_dir
from recloop.settings import load_settings

console = Console()
err_console = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML settings file.")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Where the SQLite files live.")]


def read_events(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, raw event) from a CSV (header: user_id, item_id, behaviour, timestamp,
    optional event_id) or a JSON-lines file. Lines that do not parse come as a string."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as handle:
            for number, row in enumerate(csv.DictReader(handle), start=2):
                raw: dict[str, Any] = {k: v for k, v in row.items() if v not in (None, "")}
                if "timestamp" in raw:
                    with contextlib.suppress(ValueError):  # validation reports it
                        raw["timestamp"] = float(raw["timestamp"])
                yield number, raw
        return
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except ValueError as exc:
                yield number, f"malformed JSON: {exc}"
            except RecursionError:  # a line of thousands of [: json's parser recurses
                yield number, "malformed JSON: nested too deeply"


def replay(
    file: Annotated[Path, typer.Argument(help="CSV or JSON-lines behaviour log.")],
    rate: Annotated[float, typer.Option(help="Events per second (0: as fast as possible).")] = 0.0,
    url: Annotated[str | None, typer.Option(help="A running server; default: in-process.")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="RECLOOP_API_KEY")] = None,
    batch: Annotated[int, typer.Option(help="Events per request/commit.")] = 500,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Feed a behaviour log into the stream at a chosen speed, with a progress bar."""
    if not file.exists():
        err_console.print(f"[red]error:[/red] no such file: {file}")
        raise typer.Exit(2)
    events = list(read_events(file))
    totals = {"accepted": 0, "duplicates": 0, "rejected": 0}
    errors: list[dict[str, Any]] = []
    send = _http_sender(url, api_key) if url else _local_sender(config, data_dir)
    batch = max(1, min(batch, 10_000))
    start = time.monotonic()
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
    ) as bar:
        task = bar.add_task(f"replaying {file.name}", total=len(events))
        for i in range(0, len(events), batch):
            chunk = events[i : i + batch]
            if rate > 0:  # pace: chunk i may not leave before i / rate seconds
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            good = [(n, e) for n, e in chunk if not isinstance(e, str)]
            errors += [{"line": n, "error": e} for n, e in chunk if isinstance(e, str)]
            totals["rejected"] += len(chunk) - len(good)
            if good:
                report = send([e for _, e in good], [n for n, _ in good])
                for key in ("accepted", "duplicates", "rejected"):
                    totals[key] += int(report.get(key, 0))
                errors += report.get("errors", [])
            bar.advance(task, len(chunk))
    seconds = time.monotonic() - start
    console.print(
        f"replayed {len(events)} events in {seconds:.1f} s ({len(events) / max(seconds, 1e-9):,.0f}"
        f"/s): {totals['accepted']} accepted, {totals['duplicates']} duplicates, "
        f"{totals['rejected']} rejected"
    )
    for e in errors[:10]:
        console.print(f"  line {e['line']}: {e['error']}")
    if len(errors) > 10:
        console.print(f"  ... and {len(errors) - 10} more")


def _http_sender(url: str, api_key: str | None) -> Any:
    import httpx

    headers = {"content-type": "application/json"}
    if api_key:
        headers["x-api-key"] = api_key
    client = httpx.Client(base_url=url.rstrip("/"), timeout=30, headers=headers)

    def send(events: list[Any], lines: list[int]) -> dict[str, Any]:
        r = client.post("/v1/events", content=json.dumps(events))
        body: dict[str, Any] = r.json()
        for e in body.get("errors", []):  # positions in this request -> file lines
            e["line"] = lines[int(e["line"]) - 1]
        if r.status_code not in (200, 422):
            raise typer.BadParameter(f"the server answered {r.status_code}: {body}")
        return body

    return send


def _local_sender(config: Path | None, data_dir: Path | None) -> Any:
    from recloop.streaming.service import Stream

    settings = load_settings(config, data_dir=data_dir)
    stream = Stream(settings.stream, settings.data_dir, run=False)

    def send(events: list[Any], lines: list[int]) -> dict[str, Any]:
        return stream.ingest(events, lines).to_dict()

    return send


def stream(
    runner: Annotated[str, typer.Option(help="embedded, or flink (a PyFlink job).")] = ("embedded"),
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="Stop once the log is processed.")
    ] = False,
    checkpoint_dir: Annotated[
        Path | None,
        typer.Option(
            help="flink: retained checkpoints (default DATA_DIR/_stream/flink-checkpoints)."
        ),
    ] = None,
    checkpoint_interval: Annotated[
        float, typer.Option(help="flink: seconds between checkpoints.")
    ] = 10.0,
    restore: Annotated[
        bool,
        typer.Option(
            "--restore/--no-restore",
            help="flink: resume from the newest retained checkpoint (not with --until-idle, "
            "which reads the whole spool afresh).",
        ),
    ] = True,
    parallelism: Annotated[int, typer.Option(help="flink: parallelism of the user operator.")] = 1,
) -> None:
    """Run the stream (user state -> recommendations) in this process, for servers started
    with stream.runner = "external"."""
    from recloop.streaming.service import Stream

    settings = load_settings(config, data_dir=data_dir)
    require_writable_data_dir(settings.data_dir)
    if runner == "flink":  # the Flink job on a local MiniCluster, holding the runner lock
        from recloop.learning.lease import LeaseBusyError, PipelineLease
        from recloop.streaming import flink

        if not flink.have_pyflink():
            err_console.print(
                "[red]error:[/red] the flink runner needs apache-flink: pip install -e '.\\[flink]'"
            )
            raise typer.Exit(2)
        stream_dir = settings.data_dir / "_stream"
        try:
            lease = PipelineLease.acquire(stream_dir / "runner.lock", 5.0)
        except LeaseBusyError:
            err_console.print("[red]error:[/red] another process runs this stream")
            raise typer.Exit(3) from None
        try:
            if until_idle:
                flink.run_flink_job(
                    settings.stream,
                    settings.data_dir,
                    bounded=True,
                    checkpoint_dir=checkpoint_dir,
                    restore_from=None,
                    parallelism=parallelism,
                )
                offset, users, _ = flink.read_states(settings.data_dir)
                console.print(f"flink job processed the log to offset {offset}; {len(users)} users")
                return
            checkpoints = checkpoint_dir or stream_dir / "flink-checkpoints"
            restore_from = flink.latest_checkpoint(checkpoints) if restore else None
            stop = threading.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
            console.print(
                f"flink stream job on {stream_dir} (checkpoints in {checkpoints}"
                f"{f', restored from {restore_from}' if restore_from else ''}; Ctrl-C to stop)"
            )
            flink.run_flink_job(
                settings.stream,
                settings.data_dir,
                bounded=False,
                checkpoint_dir=checkpoints,
                restore_from=restore_from,
                parallelism=parallelism,
                checkpoint_interval_ms=int(checkpoint_interval * 1000),
                stop=stop,
            )
        finally:
            lease.release()
        return
    if runner != "embedded":
        err_console.print(f"[red]error:[/red] unknown runner {runner!r} (embedded, flink)")
        raise typer.Exit(2)
    svc = Stream(settings.stream, settings.data_dir, run=False)
    if not svc.start_runner(wait_seconds=5.0, background=not until_idle):
        err_console.print("[red]error:[/red] another process runs this stream")
        raise typer.Exit(3)
    assert svc.runner is not None
    if until_idle:
        svc.runner.run_until_idle()
        c = svc.runner.counters
        console.print(
            f"processed {c.events} events: {c.state_updates} state updates, {c.triggers} "
            f"recommendations, {c.late} too late; {len(svc.runner.processor.users)} users"
        )
        svc.close()
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    console.print(f"stream runner on {settings.data_dir / '_stream'} (Ctrl-C to stop)")
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    svc.close()
