"""The benchmarks keep working (``--smoke``: the smallest run through every figure's code):
each prints its JSON figure lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "rank_inprocess",
        "learner_throughput",
        "reward_to_model",
        "ope_speed",
        "ope_accuracy",
        "stream_embedded",
        "agents_biased_logging",
        "agents_compare",
        "agents_speed",
        "drn_ablation",
        "fusion_ddpg",
        "fusion_loop",
        "gc_pause",
        "rate_limit",
        "vw_robustness",
        "recsim_ceiling",
        "recogym_ceiling",
    ],
)
def test_benchmark_runs_and_prints_figures(name: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    # the benchmark's own words when it fails (check=True would show only the exit status)
    assert run.returncode == 0, run.stderr[-5000:] + run.stdout[-2000:]
    out = run.stdout
    figures = [json.loads(line) for line in out.splitlines() if line.startswith('{"bench"')]
    assert figures, out
    assert all(f["bench"] == name and isinstance(f["value"], int | float) for f in figures)
