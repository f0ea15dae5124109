"""The `recloop` command: serve, simulate, export, bench, generate, train, evaluate-agents,
estimate-offline, ... (``recloop.cli`` exports ``app``, the entry point)."""

from __future__ import annotations

import functools
import json
import logging
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from recloop.cli.agents import generate, train
from recloop.cli.checks import RecloopTyper, require_writable_data_dir
from recloop.cli.evaluate_agents import evaluate_agents
from recloop.cli.experiment import experiment
from recloop.cli.items import features_app, items_app
from recloop.cli.keys import audit, keys_app
from recloop.cli.offline import estimate_offline
from recloop.cli.stream import replay, stream
from recloop.cli.users import users_app
from recloop.settings import DEFAULT_LOOP, load_settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from recloop.client import Loop
    from recloop.settings import Settings

app = RecloopTyper(help="recloop: a self-hosted learning decision service.", no_args_is_help=True)
console = Console()

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML settings file.")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Where the SQLite files live.")]


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    workers: Annotated[int | None, typer.Option(help="Serving processes.")] = None,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Start the web API on the embedded default (SQLite under --data-dir)."""
    import os

    from recloop.core.stats import LoopStats
    from recloop.serving import create_app
    from recloop.serving.pipeline_process import start_pipeline_process, stop_pipeline_process
    from recloop.serving.server import run as run_server
    from recloop.serving.server import server_config
    from recloop.serving.supervisor import PipelineSupervisor
    from recloop.serving.threads import serve_on_one_thread

    serve_on_one_thread()  # this process and its workers serve; before PyTorch loads

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = load_settings(config, host=host, port=port, data_dir=data_dir, workers=workers)
    require_writable_data_dir(settings.data_dir)
    console.print(
        f"recloop serving on http://{settings.host}:{settings.port} "
        f"(data in {settings.data_dir}, docs at /docs)"
    )
    if settings.workers == 1:
        run_server(server_config(create_app(settings), settings, log_level))
        return
    # Several serving processes: this process runs the one pipeline, the workers only serve.
    os.environ.update({"RECLOOP_PIPELINE": "external", "RECLOOP_DATA_DIR": str(settings.data_dir)})
    if config is not None:
        os.environ["RECLOOP_CONFIG"] = str(config)
    configs = {n: settings.loop(n) for n in settings.loop_names()}
    supervisor = PipelineSupervisor(  # restarted if it dies, as under one serving process
        lambda: start_pipeline_process(settings.data_dir, configs),
        stop_pipeline_process,
        LoopStats(),
    )
    try:
        run_server(server_config("recloop.serving.app:app_from_env", settings, log_level))
    finally:
        supervisor.close()


@app.command()
def pipeline(
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Run only the join/learn/evaluate pipeline (for servers started with pipeline=external)."""
    import os

    from recloop.serving.pipeline_process import run_pipelines

    settings = load_settings(config, data_dir=data_dir)
    run_pipelines(
        str(settings.data_dir),
        {n: settings.loop(n).model_dump() for n in settings.loop_names()},
        os.getppid(),
        getattr(logging, log_level.upper()),
    )


@app.command()
def simulate(
    events: Annotated[int, typer.Option(help="Decisions to simulate.")] = 5000,
    url: Annotated[str | None, typer.Option(help="A running server; default: in-process.")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="RECLOOP_API_KEY")] = None,
    loop_name: Annotated[str, typer.Option("--loop")] = DEFAULT_LOOP,
    seed: Annotated[int, typer.Option(help="Population seed.")] = 0,
    window: Annotated[int, typer.Option(help="Events per reported window.")] = 500,
    epsilon: Annotated[float, typer.Option(help="Exploration (in-process only).")] = 0.2,
    rate: Annotated[
        float, typer.Option(help="Events per second against a server (0: no limit).")
    ] = 250.0,
) -> None:
    """Play a synthetic population (adults like politics, teens sports...) and watch it learn."""
    from recloop.client import Loop
    from recloop.core.clock import FakeClock
    from recloop.experiments.simulate import CANDIDATES, HttpTarget, LoopTarget, Target
    from recloop.experiments.simulate import simulate as run_sim
    from recloop.simulators.synthetic import SyntheticPopulation

    population = SyntheticPopulation(seed=seed)
    tmp: tempfile.TemporaryDirectory[str] | None = None
    target: Target
    if url:
        target = HttpTarget(url, api_key, loop_name, rate=rate or None)
        names = ", ".join(c["name"] for c in CANDIDATES)
        console.print(
            f"registering candidate policies on {url} (loop {loop_name}): {names}; "
            "their off-policy estimates are shown at the end (DELETE /v1/policies/NAME)"
        )
    else:
        tmp = tempfile.TemporaryDirectory(prefix="recloop-sim-")
        clock = FakeClock()
        loop = Loop.open(
            tmp.name, start=False, clock=clock, epsilon=epsilon, exp_unit_seconds=1.0, seed=seed
        )
        target = LoopTarget(loop, clock)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("simulating", total=events)
        result = run_sim(
            target,
            population,
            events,
            window,
            progress=lambda i: bar.update(task, completed=i),
            run_id=uuid.uuid4().hex[:8] if url else None,
        )
    if url:
        console.print("(waited for the server to join this run's decisions: exp_unit + grace)")
    table = Table(title="reward rate over time")
    table.add_column("events")
    table.add_column("reward rate", justify="right")
    for n, rate in result.windows:
        table.add_row(str(n), f"{rate:.3f}")
    console.print(table)
    console.print(
        f"optimum {population.optimum():.3f}; with epsilon={epsilon} exploration "
        f"{population.epsilon_greedy_optimum(epsilon):.3f}; "
        f"achieved {result.reward_rate:.3f}"
    )
    ev = Table(title="off-policy estimates of candidate policies")
    for col in ("policy", "n", "IPS [95% CI]", "SNIPS [95% CI]", "true value"):
        ev.add_column(col)
    truth = {
        "always-politics": population.value(lambda c: {"politics": 1.0}),
        "always-sports": population.value(lambda c: {"sports": 1.0}),
    }
    for cand in result.evaluations.get("candidates", []):
        ips, snips = cand["ips"], cand["snips"]

        def fmt(e: dict[str, float | None]) -> str:
            if e["value"] is None:
                return "-"
            return f"{e['value']:.3f} [{e['low'] or 0:.3f}, {e['high'] or 0:.3f}]"

        t = truth.get(cand["name"])
        ev.add_row(
            cand["name"], str(cand["n"]), fmt(ips), fmt(snips), "-" if t is None else f"{t:.3f}"
        )
    console.print(ev)
    if tmp is not None:
        loop.close()
        tmp.cleanup()


@app.command()
def export(
    output: Annotated[Path, typer.Option("--output", "-o", help="DSJSON file to write.")],
    data_dir: DataDirOpt = None,
    loop_name: Annotated[str, typer.Option("--loop")] = DEFAULT_LOOP,
    config: ConfigOpt = None,
) -> None:
    """Export joined examples as DSJSON lines (readable by `vw --cb_explore_adf --dsjson`)."""
    from recloop.log.dsjson import dsjson_lines
    from recloop.stores.sqlite_files import joined_path
    from recloop.stores.sqlite_joined import open_joined

    settings = load_settings(config, data_dir=data_dir)
    db = joined_path(settings.data_dir / loop_name)
    if not db.exists():
        console.print(f"[red]no loop data at {db}[/red]")
        raise typer.Exit(2)
    store = open_joined(db.parent)
    count = 0
    with output.open("wb") as handle:
        for line in dsjson_lines(store.iter_all()):
            handle.write(line + b"\n")
            count += 1
    store.close()
    console.print(f"wrote {count} joined examples to {output}")


def _loop_for_report(settings: Settings, name: str) -> Loop:
    """With no server running, evaluate the log here (the candidates catch up over every
    joined decision); with one, read what its pipeline published."""
    from recloop.client import Loop
    from recloop.learning.lease import LeaseBusyError

    cfg = settings.loop(name).model_copy(update={"lease_wait_seconds": 0.0})
    try:
        loop = Loop(cfg, settings.data_dir, name, role="all")
    except LeaseBusyError:
        loop = Loop(cfg, settings.data_dir, name, role="serve")
        loop.step()  # take in the pipeline's published evaluations and counters
        return loop
    for _ in range(100_000):  # each step evaluates up to a few thousand examples
        behind = [c for c in loop.evaluator.report()["candidates"] if not c["caught_up"]]
        if loop.evaluator.offset >= loop.joined.end_seq() and not behind:
            break
        loop.step()
    return loop


@app.command()
def report(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder for the PNG files.")
    ] = Path("report"),
    data_dir: DataDirOpt = None,
    loop_name: Annotated[
        list[str] | None, typer.Option("--loop", help="Loops to report (repeat; default: all).")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Write the dashboard's charts as PNG files: reward over time against the default
    policy, and every candidate's off-policy estimate (reads the loop's files; a running
    server may keep serving)."""
    from recloop.reporting import loop_report, write_pngs

    settings = load_settings(config, data_dir=data_dir)
    names = loop_name or settings.loop_names()
    for name in names:
        if settings.storage_url is None and not (settings.data_dir / name).exists():
            console.print(f"[red]no loop {name!r} under {settings.data_dir}[/red]")
            raise typer.Exit(2)
        loop = _loop_for_report(settings, name)
        try:
            for path in write_pngs(loop_report(loop), output):
                console.print(f"wrote {path}")
        finally:
            loop.close()


@app.command()
def bench(
    only: Annotated[str | None, typer.Option(help="Run one benchmark by name.")] = None,
    quick: Annotated[bool, typer.Option(help="Fewer iterations.")] = False,
) -> None:
    """Run the benchmarks in benchmarks/ (figures as a table and JSON lines)."""
    root = Path(__file__).resolve().parents[3]  # src/recloop/cli/main.py
    if not (root / "benchmarks").is_dir():
        console.print("[red]benchmarks/ not found (run from a source checkout)[/red]")
        raise typer.Exit(2)
    cmd = [sys.executable, "-m", "benchmarks.run_all"]
    if only:
        cmd += ["--only", only]
    if quick:
        cmd.append("--quick")
    raise typer.Exit(subprocess.call(cmd, cwd=root))


def renamed(old: str, new: str, command: Callable[..., None]) -> Callable[..., None]:
    """``command`` under its former name ``old``: the same options, hidden from ``--help``,
    and one line on stderr first saying that it is now ``new``."""

    @functools.wraps(command)
    def former(*args: Any, **kwargs: Any) -> None:
        typer.echo(
            f"note: 'recloop {old}' is now 'recloop {new}'; the old name will be removed",
            err=True,
        )
        command(*args, **kwargs)

    return former


app.command("estimate-offline")(estimate_offline)
app.command("generate")(generate)
app.command("train")(train)
app.command("evaluate-agents")(evaluate_agents)
# the former names, until they are removed
app.command("evaluate", hidden=True)(renamed("evaluate", "evaluate-agents", evaluate_agents))
app.command("evaluate-offline", hidden=True)(
    renamed("evaluate-offline", "estimate-offline", estimate_offline)
)
app.command("experiment")(experiment)
app.command("replay")(replay)
app.command("stream")(stream)
app.add_typer(items_app, name="items")
app.add_typer(features_app, name="features")
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.command("audit")(audit)


@app.command("show-config")
def show_config(config: ConfigOpt = None) -> None:
    """Print the effective settings (file + environment), secrets masked."""
    settings = load_settings(config)
    console.print_json(json.dumps(settings.model_dump(mode="json"), default=str))
