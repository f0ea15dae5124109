"""`recloop experiment`: which learner configuration would have done best on this log?"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from recloop.core.errors import InvalidInputError
from recloop.settings import DEFAULT_LOOP, load_settings

if TYPE_CHECKING:
    from recloop.core.types import JoinedExample
    from recloop.evaluation.experiments import ExperimentReport, LearnerConfig

console = Console()
err_console = Console(stderr=True)


def experiment(
    log: Annotated[
        Path | None,
        typer.Option("--log", help="DSJSON file (from `recloop export` or the Decision Service)."),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Replay a loop's joined store instead of a file."),
    ] = None,
    loop_name: Annotated[str, typer.Option("--loop", help="Loop to read with --data-dir.")] = (
        DEFAULT_LOOP
    ),
    configs: Annotated[
        list[str] | None,
        typer.Option(
            "--learner",
            help="NAME=VW_ARGS[;epsilon=E][;explorer=greedy|softmax][;lambda=L], repeatable "
            "(default: a grid of cb_type x -q CA x epsilon).",
        ),
    ] = None,
    alpha: Annotated[float, typer.Option(help="1 - confidence of the intervals.")] = 0.05,
    settings_file: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML settings file (for --data-dir).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = (
        False
    ),
) -> None:
    """Replay a log through several learner configurations (progressive validation) and
    report, by IPS and SNIPS with intervals, which would have done best."""
    from recloop.evaluation.experiments import LearnerConfig, default_configs

    try:
        chosen = [LearnerConfig.parse(c) for c in configs] if configs else default_configs()
        with _examples(log, data_dir, loop_name, settings_file) as (total, examples):
            report = _replay(examples, total, chosen, alpha, as_json)
    except InvalidInputError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
        return
    _print(report, chosen)


def _replay(
    examples: Iterator[JoinedExample],
    total: int,
    configs: list[LearnerConfig],
    alpha: float,
    as_json: bool,
) -> ExperimentReport:
    """Run the replay under a progress bar (on stderr with --json, so stdout stays JSON)."""
    from recloop.evaluation.experiments import replay_experiment

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console if as_json else console,
        transient=as_json,
    ) as bar:
        task = bar.add_task(
            f"replaying {total} examples x {len(configs)} configs", total=total * len(configs)
        )
        return replay_experiment(
            examples,
            configs,
            alpha=alpha,
            progress=lambda done: bar.update(task, completed=done * len(configs)),
        )


@contextmanager
def _examples(
    log: Path | None, data_dir: Path | None, loop_name: str, settings_file: Path | None
) -> Iterator[tuple[int, Iterator[JoinedExample]]]:
    """The examples to replay and how many there are (for the progress bar)."""
    if log is not None:
        if data_dir is not None:
            raise InvalidInputError("give either --log or --data-dir, not both")
        if not log.is_file():
            raise InvalidInputError(f"no such file: {log}")
        from recloop.log.dsjson import read_dsjson

        with log.open("rb") as handle:
            total = sum(1 for line in handle if line.strip())
        yield total, read_dsjson(log)
        return
    from recloop.stores.sqlite_files import joined_path
    from recloop.stores.sqlite_joined import open_joined

    settings = load_settings(settings_file, data_dir=data_dir)
    db = joined_path(settings.data_dir / loop_name)
    if not db.exists():
        raise InvalidInputError(f"no loop data at {db} (give --log FILE or --data-dir)")
    store = open_joined(db.parent)
    try:
        yield store.count(), store.iter_all()
    finally:
        store.close()


def _print(report: ExperimentReport, configs: list[LearnerConfig]) -> None:
    level = f"{1 - report.alpha:.0%}"
    table = Table(title=f"offline experiment: {len(configs)} configs on {report.n} examples")
    table.add_column("config", no_wrap=True)
    for col in ("SNIPS", f"{level} interval", "IPS", "ESS"):
        table.add_column(col, justify="right", no_wrap=True)
    best = report.best
    for r in report.results:
        name = f"[bold green]{r.config.name} *[/bold green]" if r is best else r.config.name
        table.add_row(
            name,
            f"{r.snips.value:.4f}",
            f"[{r.snips.low:.4f}, {r.snips.high:.4f}]",
            f"{r.ips.value:.4f}",
            f"{r.effective_sample_size:.0f}",
        )
    console.print(table)
    for r in report.results:  # the configs in full, below the table so it stays narrow
        console.print(f"  {r.config.name}: {r.config.vw_args}; {r.config.describe_explorer()}")
    lg = report.logged
    console.print(
        f"logged policy: average reward {lg.value:.4f} [{lg.low:.4f}, {lg.high:.4f}] "
        f"over {report.n} examples"
    )
    if best is not None:
        verdict = (
            "not separated from the runner-up"
            if report.overlaps_runner_up
            else "separated from the runner-up"
            if report.overlaps_runner_up is False
            else "the only config"
        )
        console.print(f"best by SNIPS: [bold]{best.config.name}[/bold] ({verdict} at {level})")
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
