"""`recloop evaluate-agents`: saved deep RL agents compared with random and popularity on
the log they were trained on (ranking metrics on its test split and, for a generated log,
simulated sessions), or rankers run in a simulator (``--env``).

Formerly `recloop evaluate` (still accepted, hidden, with a note). Torch is imported inside
the command, so the rest of the CLI starts without it.
"""

from __future__ import annotations

import json
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
    seeds x episodes; learning rankers learn online from scratch in each run."""
    if env is not None:
        _evaluate_in_env(env, policy or [], episodes, seeds, as_json)
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
    env: str, policies: list[str], episodes: int, seeds: str, as_json: bool
) -> None:
    import torch

    from recloop.experiments.online_evaluation import evaluate_in_environment

    # small networks: one thread is as fast, and the figures then repeat exactly from the
    # seeds (a multi-threaded sum rounds differently, and online learning amplifies it)
    torch.set_num_threads(1)
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise fail(f"--seeds {seeds!r}: write comma-separated integers") from None
    if not policies:
        raise fail("give at least one --policy")
    try:
        with console.status(f"running {len(policies)} rankers in {env}"):
            rows = evaluate_in_environment(env, policies, seed_list, episodes)
    except InvalidInputError as exc:
        raise fail(str(exc)) from None
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table(title=f"{env}: per episode, 95% intervals over seeds x episodes")
    for col in ("policy", "runs", "reward per episode", "reward per user", "CTR"):
        table.add_column(col)
    for row in rows:
        table.add_row(
            row["policy"],
            str(row["runs"]),
            _fmt(row["reward"]),
            _fmt(row["reward_per_user"]),
            _fmt(row["ctr"]),
        )
    console.print(table)


def _fmt(figure: dict[str, float] | None) -> str:
    if figure is None:
        return "-"
    half = (figure["high"] - figure["low"]) / 2
    return f"{figure['value']:.3f} ± {half:.3f}"
