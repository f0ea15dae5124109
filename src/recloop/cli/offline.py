"""`recloop estimate-offline` (formerly `recloop evaluate-offline`): off-policy estimates of a
policy from a logged-bandit file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from recloop.core.errors import InvalidInputError

if TYPE_CHECKING:
    from recloop.evaluation.logdata import JoinedLog
    from recloop.evaluation.offline import OfflineReport

console = Console()
err_console = Console(stderr=True)

DEFAULT_ESTIMATORS = "dm,ips,snips,dr,sndr,switch-dr"


def estimate_offline(
    log: Annotated[
        Path | None,
        typer.Option(
            "--log",
            help="CSV or Parquet log: action, reward, propensity, [position], x_* context columns.",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Evaluate a loop's own joined log instead of --log."),
    ] = None,
    loop: Annotated[str, typer.Option("--loop", help="The loop, with --data-dir.")] = "default",
    estimators: Annotated[
        str | None,
        typer.Option(help=f"Comma-separated (default {DEFAULT_ESTIMATORS})."),
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option(
            "--policy", help="A policy kind (uniform, first-action, ...) or a VW model file."
        ),
    ] = None,
    policy_probs: Annotated[
        Path | None,
        typer.Option(
            "--policy-probs", help=".npy of action probabilities: rows x actions (x positions)."
        ),
    ] = None,
    action_features: Annotated[
        Path | None, typer.Option("--action-features", help="CSV/Parquet, one row per action.")
    ] = None,
    explorer: Annotated[
        str,
        typer.Option(
            help="How --policy turns scores into probabilities: greedy, epsilon-greedy, softmax."
        ),
    ] = "greedy",
    epsilon: Annotated[float, typer.Option(help="Epsilon of --explorer epsilon-greedy.")] = 0.1,
    reward_model: Annotated[
        str,
        typer.Option(
            help="hgb, ridge, random-forest, or for 0/1 rewards logistic, hgb-classifier."
        ),
    ] = "hgb",
    folds: Annotated[int, typer.Option(help="Cross-fitting folds of the reward model.")] = 3,
    clip: Annotated[
        float | None,
        typer.Option(
            help="Weight cap of clipped-ips/clipped-dr (default: the 99th weight percentile)."
        ),
    ] = None,
    alpha: Annotated[float, typer.Option(help="1 - confidence of the intervals.")] = 0.05,
    bootstrap: Annotated[
        int, typer.Option(help="Bootstrap resamples for the intervals (0 = normal approximation).")
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed of folds and bootstrap.")] = 0,
    plot: Annotated[
        Path | None,
        typer.Option(help="Where to write the plot (default: next to the log, .ope.png)."),
    ] = None,
    no_plot: Annotated[bool, typer.Option("--no-plot", help="Write no plot.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = (
        False
    ),
) -> None:
    """Estimate how a policy would have done on a logged-bandit file (DM, IPS, SNIPS, DR,
    SNDR, Switch-DR, DR-OS, clipped variants, IIPS) with intervals and overlap warnings."""
    if (log is None) == (data_dir is None):
        err_console.print("[red]error:[/red] give --log FILE or --data-dir DIR [--loop NAME]")
        raise typer.Exit(2)
    source = log if log is not None else Path(f"{loop}.joined")
    try:
        report = _run(
            log,
            (data_dir, loop) if data_dir is not None else None,
            estimators,
            policy,
            policy_probs,
            action_features,
            explorer,
            epsilon,
            reward_model,
            folds,
            clip,
            alpha,
            bootstrap,
            seed,
        )
    except InvalidInputError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    plot_path = None
    if not no_plot:
        from recloop.evaluation.offline import write_plot

        plot_path = plot or source.with_suffix(".ope.png")
        write_plot(report, plot_path, title=f"{source.name}: off-policy estimates")
    if as_json:
        out = report.to_dict()
        out["plot"] = str(plot_path) if plot_path else None
        typer.echo(json.dumps(out))
        return
    table = Table(title=f"off-policy estimates on {source.name} ({report.overlap.n} rows)")
    for col in ("estimator", "value", f"{1 - alpha:.0%} interval", "method"):
        table.add_column(col)
    for row in report.rows:
        iv = row.interval
        table.add_row(row.name, f"{iv.value:.5f}", f"[{iv.low:.5f}, {iv.high:.5f}]", iv.method)
    console.print(table)
    ov = report.overlap
    console.print(
        f"logged policy average reward {report.logged_average:.5f}; effective sample size "
        f"{ov.effective_sample_size:.0f} ({ov.ess_ratio:.1%}); max weight {ov.max_weight:.3g}"
    )
    if report.reward_model:
        console.print(f"reward model: {report.reward_model}")
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    if plot_path:
        console.print(f"plot: {plot_path}")


def _run(
    log: Path | None,
    loop_source: tuple[Path, str] | None,
    estimators: str | None,
    policy: str | None,
    policy_probs: Path | None,
    action_features: Path | None,
    explorer: str,
    epsilon: float,
    reward_model: str,
    folds: int,
    clip: float | None,
    alpha: float,
    bootstrap: int,
    seed: int,
) -> OfflineReport:
    import numpy as np

    from recloop.evaluation.estimators import make_estimator
    from recloop.evaluation.logdata import read_log
    from recloop.evaluation.offline import (
        joined_action_dist,
        load_policy_probs,
        policy_action_dist,
        run_offline,
    )
    from recloop.evaluation.offpolicy import prepare
    from recloop.evaluation.reward_model import REWARD_MODELS
    from recloop.exploration.explorers import make_explorer
    from recloop.kinds.policies import load_policy

    if (policy is None) == (policy_probs is None):
        raise InvalidInputError("give the evaluation policy as --policy or --policy-probs")
    if reward_model not in REWARD_MODELS:
        raise InvalidInputError(f"--reward-model must be one of {', '.join(REWARD_MODELS)}")
    how = make_explorer(explorer, epsilon)
    joined = None
    if loop_source is not None:
        joined = read_loop_log(*loop_source)
        data = joined.data
        estimators = estimators or DEFAULT_ESTIMATORS
        dist = (
            load_policy_probs(policy_probs)
            if policy_probs is not None
            else joined_action_dist(load_policy(policy or ""), joined, how)
        )
    else:
        assert log is not None
        data = read_log(log, action_features)
        estimators = estimators or DEFAULT_ESTIMATORS
        dist = (
            load_policy_probs(policy_probs)
            if policy_probs is not None
            else policy_action_dist(load_policy(policy or ""), data, how)
        )
    names = [n.strip() for n in estimators.split(",") if n.strip()]
    if not names:
        raise InvalidInputError("--estimators is empty")
    if clip is None and any(n.startswith("clipped-") for n in names):
        clip = float(np.quantile(prepare(data, dist).weight, 0.99)) or 1.0
    chosen = [make_estimator(n, clip=clip) for n in names]
    return run_offline(
        data,
        dist,
        chosen,
        joined=joined,
        reward_model=reward_model,
        n_folds=folds,
        alpha=alpha,
        n_bootstrap=bootstrap,
        seed=seed,
    )


def read_loop_log(data_dir: Path, loop: str) -> JoinedLog:
    """A loop's joined examples from its embedded store (``DATA_DIR/LOOP/joined.db``). Here,
    not in ``evaluation``: the estimators take data and never open stores
    (``.importlinter``)."""
    from recloop.evaluation.logdata import from_joined
    from recloop.stores.sqlite_files import joined_path
    from recloop.stores.sqlite_joined import open_joined

    db = joined_path(Path(data_dir) / loop)
    if not db.exists():
        raise InvalidInputError(f"no loop data at {db}")
    store = open_joined(db.parent)
    try:
        return from_joined(list(store.iter_all()))
    finally:
        store.close()
