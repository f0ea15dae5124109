"""`recloop evaluate-agents`: saved deep RL agents compared with random and popularity on
the log they were trained on (ranking metrics on its test split and, for a generated log,
simulated sessions), or rankers run in a simulator (``--env``).

Formerly `recloop evaluate` (still accepted, hidden, with a note). Torch is imported inside
the command, so the rest of the CLI starts without it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from recloop.cli.agents import fail, read_world
from recloop.core.errors import InvalidInputError, ModelRejectedError

console = Console()


def evaluate_agents(
    data: Annotated[
        Path | None, typer.Option(help="The interaction log the agents were trained on.")
    ] = None,
    agent: Annotated[
        list[Path] | None,
        typer.Option("--agent", "-a", help="A saved agent (agent.zip or its run folder); repeat."),
    ] = None,
    env: Annotated[
        str | None,
        typer.Option(
            help="Judge rankers in a simulator instead: returning-users, fusion-shop, recsim, "
            "recogym."
        ),
    ] = None,
    policy: Annotated[
        list[str] | None,
        typer.Option("--policy", "-p", help="With --env: a ranker to run (repeat)."),
    ] = None,
    episodes: Annotated[int, typer.Option(help="With --env: episodes per seed.")] = 1,
    seeds: Annotated[str, typer.Option(help="With --env: comma-separated seeds.")] = "0,1,2",
    jobs: Annotated[
        int,
        typer.Option(help="With --env: runs at once, in worker processes (default: the CPUs)."),
    ] = 0,
    k: Annotated[int, typer.Option(help="List length of the ranking metrics.")] = 10,
    sessions: Annotated[
        int, typer.Option(help="Simulated sessions per agent (needs the generated world).")
    ] = 300,
    seed: Annotated[int, typer.Option(help="Seeds the baselines and the sessions.")] = 0,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Where to write evaluation.json/png.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = (
        False
    ),
) -> None:
    """Compare saved agents with random and popularity on a log (--data, --agent): NDCG, Hit
    and precision@k with 95% intervals on the time-split test set, coverage, and (for a
    generated log) intra-list similarity under the true item vectors and the reward of
    simulated sessions. Agents of the same algorithm (several seeds) are pooled. Or run
    rankers in a simulator (--env, --policy): reward per episode and CTR, 95% intervals over
    seeds x episodes, beside the environment's strongest simple baseline (each agent's row
    says whether it beats it); learning rankers learn online from scratch in each run.
    With --output, learning-curves.png and evaluation.json there."""
    if env is not None:
        _evaluate_in_env(env, policy or [], episodes, seeds, as_json, output, jobs)
        return
    if data is None or not agent:
        raise fail("give --data LOG and --agent RUN (or --env NAME --policy NAME)")
    from recloop.experiments.comparison import compare_saved

    paths = [p / "agent.zip" if p.is_dir() else p for p in agent]
    try:
        result = compare_saved(data, paths, read_world(data), k, sessions, seed)
    except (InvalidInputError, ModelRejectedError) as exc:
        raise fail(str(exc)) from None
    rows = result.rows()
    out = output or Path(paths[0]).parent
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(rows, indent=1))
    result.plot(out / "evaluation.png")
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table(title=f"agents on the test split of {data} (95% intervals)")
    columns = ("policy", "seeds", f"NDCG@{k}", f"Hit@{k}", "coverage", "ILS", "session reward")
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(
            row["name"],
            str(row["seeds"]),
            _fmt(row[f"ndcg@{k}"]),
            _fmt(row[f"hit@{k}"]),
            f"{row['coverage']:.2f}",
            _fmt(row.get("intra_list_similarity")),
            _fmt(row.get("session_reward")),
        )
    console.print(table)
    console.print(f"wrote {out / 'evaluation.json'} and {out / 'evaluation.png'}")


def _evaluate_in_env(
    env: str,
    policies: list[str],
    episodes: int,
    seeds: str,
    as_json: bool,
    output: Path | None,
    jobs: int,
) -> None:
    import torch
    from rich.progress import Progress

    from recloop.experiments.online_evaluation import STRONGEST, evaluate_in_environment

    # small networks: one thread is as fast, and the figures then repeat exactly from the
    # seeds (a multi-threaded sum rounds differently, and online learning amplifies it)
    torch.set_num_threads(1)
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise fail(f"--seeds {seeds!r}: write comma-separated integers") from None
    if not policies:
        raise fail("give at least one --policy")
    extra = 0 if STRONGEST.get(env, policies[0]) in policies else 1
    total = (len(policies) + extra) * len(seed_list) * max(episodes, 1)
    try:
        with Progress(console=console, transient=True, disable=as_json) as progress:
            task = progress.add_task(f"{env}: runs", total=total)
            rows = evaluate_in_environment(
                env,
                policies,
                seed_list,
                episodes,
                on_run=lambda policy, _: progress.advance(task),
                jobs=jobs if jobs > 0 else os.cpu_count() or 1,
            )
    except InvalidInputError as exc:
        raise fail(str(exc)) from None
    if output is not None:
        from recloop.experiments.learning_curves import plot_learning_curves

        output.mkdir(parents=True, exist_ok=True)
        (output / "evaluation.json").write_text(json.dumps(rows, indent=1))
        plot_learning_curves(env, rows, output / "learning-curves.png")
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table(title=f"{env}: per episode, 95% intervals over seeds x episodes")
    columns = ("policy", "runs", "reward per episode", "reward per user", "CTR", "s/run", "against")
    for col in columns:
        table.add_column(col)
    for row in rows:
        against = row.get("against")
        table.add_row(
            row["policy"],
            str(row["runs"]),
            _fmt(row["reward"]),
            _fmt(row["reward_per_user"]),
            _fmt(row["ctr"]),
            f"{row['seconds_per_run']:.0f}",
            f"{against['verdict']} than {against['baseline']}"
            if against and against["verdict"] != "not separated"
            else f"not separated from {against['baseline']}"
            if against
            else "(baseline)",
        )
    console.print(table)
    if output is not None:
        console.print(f"wrote {output / 'evaluation.json'} and {output / 'learning-curves.png'}")


def _fmt(figure: dict[str, float] | None) -> str:
    if figure is None:
        return "-"
    half = (figure["high"] - figure["low"]) / 2
    return f"{figure['value']:.3f} ± {half:.3f}"
