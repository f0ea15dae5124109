"""Shared helpers: percentiles, JSON figure lines, tables, memory/CPU probes, payloads."""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import socket
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from recloop.evaluation.ranking import mean_interval

JSON_PREFIX = '{"bench"'
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# -- statistics -----------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    frac = pos - lo
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * frac)


def summarize(values: Sequence[float]) -> dict[str, float]:
    """n, mean, p50, p90, p99, max of a sample (same unit as the values)."""
    if not values:
        return {"n": 0, "mean": math.nan, "p50": math.nan, "p90": math.nan, "p99": math.nan}
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "mean": sum(ordered) / len(ordered),
        "p50": percentile(ordered, 50),
        "p90": percentile(ordered, 90),
        "p99": percentile(ordered, 99),
        "max": float(ordered[-1]),
    }


def ns_to_ms(values: Iterable[int]) -> list[float]:
    return [v / 1e6 for v in values]


def sample_ns(fn: Callable[[int], object], n: int, warmup: int = 0) -> list[int]:
    """Call ``fn(i)`` for i < ``warmup`` untimed, then for the next ``n`` values of i, timing
    each call (ns). Every call gets a distinct i."""
    for i in range(warmup):
        fn(i)
    out = [0] * n
    clock = time.perf_counter_ns
    for k in range(n):
        t0 = clock()
        fn(warmup + k)
        out[k] = clock() - t0
    return out


# -- figures --------------------------------------------------------------------------------
def _tidy(value: float) -> float:
    if value is None or not math.isfinite(value):
        return value
    if abs(value) >= 100:
        return round(value, 1)
    return float(f"{value:.4g}")


def _direction(name: str) -> str:
    return "higher" if ("per_s" in name or name.endswith("_rate")) else "lower"


def figure(
    bench: str,
    figure: str,
    value: float,
    goal: float | None = None,
    n: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Print one JSON figure line (DESIGN.md "Benchmarks") and return it as a dict.

    With a goal, ``better`` says which way the goal points ("lower" for latencies, "higher"
    for throughputs: inferred from the name unless given) and ``met`` whether it was met.
    """
    row: dict[str, Any] = {
        "bench": bench,
        "figure": figure,
        "value": _tidy(float(value)),
        "goal": goal,
        "n": n,
    }
    if goal is not None:
        better = extra.pop("better", None) or _direction(figure)
        row["better"] = better
        if math.isfinite(value):
            row["met"] = bool(value <= goal if better == "lower" else value >= goal)
        else:
            row["met"] = False
    for key, val in extra.items():
        if isinstance(val, np.generic):  # numpy scalars (np.bool_, np.float64) as plain
            val = val.item()
        row[key] = _tidy(val) if isinstance(val, float) else val
    print(json.dumps(row, allow_nan=True), flush=True)
    return row


def mean_figure(bench: str, name: str, values: Sequence[float], **extra: Any) -> dict[str, Any]:
    """One figure: the mean of ``values`` with its 95% interval (``low``, ``high``) and
    their count as ``n``."""
    iv = mean_interval(np.asarray(values, dtype=float))
    return figure(bench, name, iv.value, None, len(values), low=iv.low, high=iv.high, **extra)


def print_table(title: str, rows: Sequence[dict[str, Any]]) -> None:
    """A human-readable table of figure rows (rich if it imports, plain text otherwise)."""
    headers = ["bench", "figure", "value", "goal", "met", "n"]

    def cells(row: dict[str, Any]) -> list[str]:
        met = row.get("met")
        return [
            str(row.get("bench", "")),
            str(row.get("figure", "")),
            f"{row.get('value')}",
            "" if row.get("goal") is None else f"{row['goal']}",
            "" if met is None else ("yes" if met else "NO"),
            "" if row.get("n") is None else str(row["n"]),
        ]

    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is a dependency, but keep a fallback
        widths = [max(len(h), *(len(cells(r)[i]) for r in rows)) for i, h in enumerate(headers)]
        print(f"\n{title}")
        print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
        for row in rows:
            line = cells(row)
            print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))
        sys.stdout.flush()
        return
    table = Table(title=title)
    for h in headers:
        table.add_column(h, justify="right" if h in ("value", "goal", "n") else "left")
    for row in rows:
        line = cells(row)
        if line[4] == "NO":
            line[4] = "[red]NO[/red]"
        elif line[4] == "yes":
            line[4] = "[green]yes[/green]"
        table.add_row(*line)
    Console(width=max(100, _terminal_width())).print(table)
    sys.stdout.flush()


def _terminal_width() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return 100


# -- processes: memory and CPU --------------------------------------------------------------
def _status_kb(pid: int | None, key: str) -> float | None:
    path = f"/proc/{pid if pid is not None else 'self'}/status"
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def rss_mb(pid: int | None = None) -> float:
    """Resident memory now (MiB) of a process (default: this one)."""
    kb = _status_kb(pid, "VmRSS")
    if kb is None:
        return peak_rss_mb(pid)
    return kb / 1024.0


def peak_rss_mb(pid: int | None = None) -> float:
    """Peak resident memory (MiB); falls back to getrusage for this process."""
    kb = _status_kb(pid, "VmHWM")
    if kb is None and pid is None:
        kb = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return math.nan if kb is None else kb / 1024.0


def cpu_seconds(pid: int | None = None) -> float:
    """User+system CPU seconds used so far by a process and all its threads."""
    if pid is None:
        return time.process_time()
    try:
        with open(f"/proc/{pid}/stat") as handle:
            raw = handle.read()
    except OSError:
        return math.nan
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime


def descendants(pid: int) -> list[int]:
    """The process and every process below it (e.g. the server's pipeline process)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    todo.extend(int(c) for c in handle.read().split())
        except OSError:
            continue
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its descendants (children alive now)."""
    return sum(c for c in (cpu_seconds(p) for p in descendants(pid)) if not math.isnan(c))


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants (MiB)."""
    return sum(r for r in (rss_mb(p) for p in descendants(pid)) if not math.isnan(r))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- synthetic payloads ---------------------------------------------------------------------
CATALOGUE = 200


def synthetic_requests(
    count: int,
    seed: int = 0,
    n_actions: int = 10,
    n_features: int = 10,
    catalogue: int | None = CATALOGUE,
) -> list[tuple[dict[str, float], list[dict[str, Any]]]]:
    """``count`` (context, actions) pairs of numeric features (4 decimals, like a JSON client).

    Every context is new. Actions are ``n_actions`` items drawn from a catalogue of
    ``catalogue`` items whose features never change (the usual case: an item is sent with
    the same features each time); with ``catalogue=None`` every action of every request
    has features of its own (nothing repeats: the worst case for any caching).
    """
    rng = random.Random(seed)

    def features(prefix: str) -> dict[str, float]:
        return {f"{prefix}{j}": round(rng.random(), 4) for j in range(n_features)}

    items = [{"id": f"item{k}", "features": features("a")} for k in range(catalogue or 0)]
    out = []
    for _ in range(count):
        context = features("c")
        if catalogue:
            actions = [dict(a) for a in rng.sample(items, n_actions)]
        else:
            actions = [{"id": f"item{k}", "features": features("a")} for k in range(n_actions)]
        out.append((context, actions))
    return out


def synthetic_reward(context: dict[str, float], features: dict[str, Any]) -> float:
    """A learnable, deterministic click: the action's a0 matches the context's c0."""
    return 1.0 if abs(float(features.get("a0", 0.0)) - float(context.get("c0", 0.0))) < 0.3 else 0.0


def naive_lines(context: dict[str, float], actions: list[dict[str, Any]]) -> list[str]:
    """The plainest VW ADF text for numeric features (the yardstick's text building)."""
    shared = "shared |C " + " ".join(f"{k}:{v}" for k, v in context.items())
    return [shared] + [
        f"|A id={a['id']} " + " ".join(f"{k}:{v}" for k, v in a["features"].items())
        for a in actions
    ]


# -- Vowpal Wabbit without the pyvw wrapper --------------------------------------------------
def direct_vw(ws: Any) -> tuple[Callable[[str], list[float]], Callable[[str], None]] | None:
    """(predict, learn) on one newline-joined ADF text, calling pylibvw directly.

    ``Workspace.predict/learn`` wrap every line in a Python ``Example`` object; these skip
    that (same parser, same learner, same numbers). They use VW's private ``_parse`` and
    ``_finish_example_multi_ex``: a yardstick for what VW itself costs, None if unavailable.
    """
    try:
        import pylibvw
    except ImportError:
        return None
    vw = pylibvw.vw
    if not all(
        hasattr(vw, n) for n in ("predict_multi", "learn_multi", "_finish_example_multi_ex")
    ):
        return None

    def predict(text: str) -> list[float]:
        examples = ws._parse(text)
        vw.predict_multi(ws, examples)
        scores = list(examples[0].get_action_scores())
        vw._finish_example_multi_ex(ws, examples)
        return scores

    def learn(text: str) -> None:
        examples = ws._parse(text)
        vw.learn_multi(ws, examples)
        vw._finish_example_multi_ex(ws, examples)

    return predict, learn


# -- entry points ---------------------------------------------------------------------------
_SMOKE = {"on": False}


def smoke() -> bool:
    """Whether this run is ``--smoke``: the smallest run that still goes through every
    code path that prints figures (agents_speed probes the memory of one variant, not all),
    for the test that the benchmarks keep working (``tests/integration/
    test_benchmarks_run.py``). Its figures measure nothing; ``--quick`` ones do, roughly."""
    return _SMOKE["on"]


def cli(main: Callable[[bool], list[dict[str, Any]]], title: str) -> None:
    """``python -m benchmarks.NAME [--quick | --smoke]`` (each ``main`` prints its own
    table). ``--smoke`` is ``--quick`` made smaller still where a benchmark's quick run
    takes minutes."""
    parser = argparse.ArgumentParser(description=title)
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument(
        "--smoke", action="store_true", help="the smallest run: checks it works, measures nothing"
    )
    args = parser.parse_args()
    _SMOKE["on"] = args.smoke
    main(args.quick or args.smoke)
