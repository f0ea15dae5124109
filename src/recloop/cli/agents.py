"""`recloop generate`, `recloop train`: deep RL agents from logs.

generate writes a synthetic shop's interaction log (and, next to it, the world's
configuration, so evaluate-agents can replay sessions against its ground-truth user model);
train fits one algorithm on a log's training split and saves the agent (a zip that serves
without the training code), its curves and metrics, optionally as a version in a loop's
model store. `recloop evaluate-agents` (``cli/evaluate_agents.py``) compares saved agents
with random and popularity, offline and interactively.
Torch is imported inside the commands, so the rest of the CLI starts without it.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from recloop.core.errors import InvalidInputError
from recloop.settings import DEFAULT_LOOP

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np
    from numpy.typing import NDArray

    from recloop.agents.trainer import TrainRun
    from recloop.simulators.ecommerce import EcommerceConfig

console = Console()
err_console = Console(stderr=True)

ALGOS = "reinforce-topk, reinforce, ddpg, bcq, bc"


def fail(message: str) -> typer.Exit:
    """A usage error (the message on stderr, exit status 2) to raise; evaluate_agents too."""
    err_console.print(f"[red]error:[/red] {message}")
    return typer.Exit(2)


def world_file(data: Path) -> Path:
    """Where generate keeps the world's configuration, next to the log."""
    return data.with_name(data.name + ".world.json")


def read_world(data: Path) -> EcommerceConfig | None:
    from recloop.simulators.ecommerce import EcommerceConfig

    path = world_file(data)
    if not path.exists():
        return None
    return EcommerceConfig(**json.loads(path.read_text()))


# -- generate -------------------------------------------------------------------------------


def generate(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Log to write: .csv, .parquet or .jsonl.")
    ],
    events: Annotated[int, typer.Option(help="About this many logged impressions.")] = 40_000,
    users: Annotated[int, typer.Option(help="Users in the world.")] = 300,
    items: Annotated[int, typer.Option(help="Items in the catalogue.")] = 150,
    seed: Annotated[int, typer.Option(help="Seeds the world and the log.")] = 0,
    biased: Annotated[
        bool,
        typer.Option(
            "--biased",
            help="A logger that follows popularity alone, in a shop whose popular items "
            "are the less appealing ones (the hard case for off-policy learning).",
        ),
    ] = False,
) -> None:
    """Write a synthetic shop's interaction log (user, item, behaviour, timestamp,
    propensity, session) with a ground-truth user model behind it."""
    import pandas as pd

    from recloop.simulators.ecommerce import (
        EcommerceConfig,
        EcommerceWorld,
        item_id,
        strongly_biased_config,
        user_id,
    )

    if events < 1 or users < 1 or items < 2:
        raise fail("--events and --users must be positive and --items at least 2")
    if biased:
        cfg = strongly_biased_config(seed, users, items)
    else:
        cfg = EcommerceConfig(n_users=users, n_items=items, seed=seed)
    log = EcommerceWorld(cfg).generate(events)
    frame = pd.DataFrame(
        {
            "user": [user_id(u) for u in log.user],
            "item": [item_id(i) for i in log.item],
            "behaviour": log.behaviours(),
            "timestamp": log.timestamp,
            "propensity": log.propensity,
            "session": log.session,
        }
    )
    suffix = output.suffix.lower()
    output.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        frame.to_csv(output, index=False)
    elif suffix == ".parquet":
        frame.to_parquet(output, index=False)
    elif suffix in (".jsonl", ".json"):
        frame.to_json(output, orient="records", lines=True)
    else:
        raise fail(f"{output}: write .csv, .parquet or .jsonl")
    world = asdict(cfg)
    world["rewards"] = dict(cfg.rewards)
    world_file(output).write_text(json.dumps(world, indent=1))
    console.print(
        f"wrote {len(frame)} interactions ({users} users, {items} items) to {output}; "
        f"the world behind them to {world_file(output)}"
    )


# -- train ----------------------------------------------------------------------------------


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise InvalidInputError(f"--param {pair!r}: write NAME=VALUE")
        try:
            out[name.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[name.strip()] = raw
    return out


def train(
    algo: Annotated[str, typer.Option(help=f"One of: {ALGOS}.")],
    data: Annotated[
        Path,
        typer.Option(
            help="Interaction log: CSV/Parquet/JSONL with user, item, behaviour, "
            "timestamp [, propensity, session]."
        ),
    ],
    seed: Annotated[int, typer.Option(help="Seeds networks, batches and embeddings.")] = 0,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Run folder (default runs/ALGO-seedSEED)."),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (default: the algorithm's).")] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Hyperparameter NAME=VALUE (repeatable)."),
    ] = None,
    last_n: Annotated[int, typer.Option(help="Recent items in a state.")] = 10,
    valid_fraction: Annotated[float, typer.Option(help="Latest-but-test share.")] = 0.1,
    test_fraction: Annotated[float, typer.Option(help="Latest share, held out.")] = 0.1,
    embeddings: Annotated[
        bool,
        typer.Option(
            "--embeddings/--no-embeddings", help="Pre-train MF/BPR vectors on the training split."
        ),
    ] = True,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Also store the agent as a version of this loop's models."),
    ] = None,
    loop: Annotated[str, typer.Option("--loop", help="The loop, with --data-dir.")] = DEFAULT_LOOP,
    activate: Annotated[
        bool,
        typer.Option(
            "--activate",
            help="With --data-dir: pin the stored version, so the loop serves the agent "
            "(not the bandit learner's next version) until models/latest/activate.",
        ),
    ] = False,
    plot: Annotated[bool, typer.Option("--plot/--no-plot", help="Write curves.png.")] = True,
    item_features: Annotated[
        Path | None,
        typer.Option(
            "--item-features",
            help="A loop's directory (DATA_DIR/LOOP): its catalogue's generated features "
            "shape the pre-trained item vectors (items with no interactions get vectors too).",
        ),
    ] = None,
) -> None:
    """Train one deep RL agent on a log's training split; save it, its curves and metrics."""
    from recloop.agents.checkpoint import save_agent
    from recloop.agents.datasets import read_interactions
    from recloop.agents.registry import make_config
    from recloop.agents.trainer import TrainSpec, train_agent

    out = output or Path("runs") / f"{algo}-seed{seed}"
    try:
        params = _parse_params(param or [])
        if epochs is not None:
            params["epochs"] = epochs
        n_epochs = int(make_config(algo, params).epochs)
        log = read_interactions(data)
        content = None
        if item_features is not None:
            content, found = catalogue_content(item_features, log.item_ids)
            console.print(f"item features: {found} of {log.n_items} items in the catalogue")
        spec = TrainSpec(
            algo,
            params,
            seed,
            last_n,
            valid_fraction,
            test_fraction,
            pretrain_embeddings=embeddings,
            item_content=content,
        )
        console.print(f"{algo}: {len(log)} interactions, {log.n_users} users, {log.n_items} items")
        columns = (
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console) as bar:
            task = bar.add_task("training", total=n_epochs)

            def on_epoch(epoch: int, figure: float, ndcg: float | None) -> None:
                shown = f"loss {figure:.4g}" + ("" if ndcg is None else f", val NDCG {ndcg:.3f}")
                bar.update(task, advance=1, description=f"epoch {epoch + 1}: {shown}")

            run = train_agent(log, spec, on_epoch)
    except InvalidInputError as exc:
        raise fail(str(exc)) from None
    training = {
        "data": str(data),
        "seed": seed,
        "last_n": last_n,
        "valid_fraction": valid_fraction,
        "test_fraction": test_fraction,
        "embeddings": embeddings,
        "item_features": None if item_features is None else str(item_features),
    }
    blob = save_agent(
        run.agent, list(log.user_ids), list(log.item_ids), last_n, {"training": training}
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "agent.zip").write_bytes(blob)
    metrics = _metrics(run, training)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    _write_curve(out / "curve.csv", run)
    if plot:
        _plot_curves(out / "curves.png", run)
    t = run.test
    console.print(
        f"test NDCG@10 {t.ndcg.value:.3f} [{t.ndcg.low:.3f}, {t.ndcg.high:.3f}], "
        f"Hit@10 {t.hit.value:.3f}, coverage {t.coverage:.2f}; "
        f"{run.samples_per_second:,.0f} samples/s; saved to {out}/agent.zip"
    )
    if data_dir is not None:
        version = _store(blob, data_dir, loop, run, activate)
        pinned = " and activated it" if activate else ""
        console.print(f"stored as model version {version} of loop {loop!r} in {data_dir}{pinned}")


def _metrics(run: TrainRun, training: dict[str, Any]) -> dict[str, Any]:
    t = run.test
    return {
        "algo": run.spec.algo,
        "hyperparameters": run.agent.hyperparameters(),
        "training": training,
        "train_steps": run.train_steps,
        "fit_seconds": run.fit_seconds,
        "embedding_seconds": run.embedding_seconds,
        "samples_per_second": run.samples_per_second,
        "curve": run.curve,
        "validation_ndcg": run.validation_ndcg,
        "test": {
            "ndcg@10": asdict(t.ndcg),
            "hit@10": asdict(t.hit),
            "precision@10": asdict(t.precision),
            "coverage": t.coverage,
            "n": t.n,
        },
    }


def _write_curve(path: Path, run: TrainRun) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "loss", "validation_ndcg@10"])
        for epoch, loss in enumerate(run.curve):
            ndcg = run.validation_ndcg[epoch] if epoch < len(run.validation_ndcg) else ""
            writer.writerow([epoch + 1, loss, ndcg])


def _plot_curves(path: Path, run: TrainRun) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    epochs = range(1, len(run.curve) + 1)
    left.plot(epochs, run.curve, marker="o")
    left.set(title=f"{run.spec.algo}: training loss", xlabel="epoch")
    if run.validation_ndcg:
        right.plot(range(1, len(run.validation_ndcg) + 1), run.validation_ndcg, marker="o")
    right.set(title="validation NDCG@10", xlabel="epoch")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _store(blob: bytes, data_dir: Path, loop: str, run: TrainRun, activate: bool) -> str:
    from recloop.settings import load_settings
    from recloop.stores.factory import open_stores

    settings = load_settings(None, data_dir=data_dir)
    stores = open_stores(settings.loop(loop), settings.data_dir / loop)
    try:
        meta = {"kind": "agent", "algo": run.spec.algo, "test_ndcg@10": run.test.ndcg.value}
        version = stores.models.put(blob, meta).version
        if activate:
            stores.models.activate(version)
        return version
    finally:
        stores.close()


def catalogue_content(
    loop_dir: Path, item_ids: Sequence[str], dim: int | None = None
) -> tuple[NDArray[np.float32], int]:
    """``features.vectors.item_content`` from the catalogue of the loop stored in
    ``loop_dir`` (``DATA_DIR/LOOP``, the embedded SQLite catalogue). Here, where files are
    opened: ``features`` opens no stores (``.importlinter``)."""
    from recloop.features.vectors import CONTENT_DIM, item_content
    from recloop.stores.sqlite_items import SqliteItemStore

    path = Path(loop_dir) / "items.db"
    if not path.exists():
        raise InvalidInputError(f"no item catalogue at {path} (recloop items import first)")
    store = SqliteItemStore(path)
    try:
        return item_content(store, item_ids, CONTENT_DIM if dim is None else dim)
    finally:
        store.close()
