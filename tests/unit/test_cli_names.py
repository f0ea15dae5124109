"""The two evaluation commands have names a user tells apart: ``evaluate-agents`` (saved deep
RL agents on their log, or rankers in a simulator) and ``estimate-offline`` (off-policy
estimates of a policy from a logged-bandit file). Their former names, ``evaluate`` and
``evaluate-offline``, still run with the same options, hidden from ``--help``, after one
line on stderr saying the new name."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from recloop.cli import app
from recloop.evaluation.logdata import write_log
from recloop.evaluation.synthetic import Evaluation, SyntheticBandit

RECLOOP = str(Path(sys.executable).parent / "recloop")
RENAMED = {"evaluate": "evaluate-agents", "evaluate-offline": "estimate-offline"}

runner = CliRunner()


def notice(old: str) -> str:
    return f"note: 'recloop {old}' is now 'recloop {RENAMED[old]}'; the old name will be removed"


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RECLOOP_")}
    return subprocess.run(
        [RECLOOP, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**clean, "COLUMNS": "200"},
    )


def listed_commands(help_text: str) -> set[str]:
    """The command names in the Commands panel of ``recloop --help``."""
    names: set[str] = set()
    lines = help_text.splitlines()
    start = next(i for i, line in enumerate(lines) if "Commands" in line)
    for line in lines[start + 1 :]:
        body = line.removeprefix("│ ")
        if body[:1].isalpha():
            names.add(body.split()[0])
    return names


def test_help_lists_the_new_names_and_not_the_old(tmp_path: Path) -> None:
    result = _run(["--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    listed = listed_commands(result.stdout)
    assert {"evaluate-agents", "estimate-offline", "generate", "train", "items"} <= listed
    assert not listed & set(RENAMED), listed


@pytest.mark.parametrize("old", sorted(RENAMED))
def test_an_old_name_says_the_new_one_in_one_line_first(tmp_path: Path, old: str) -> None:
    """By the installed command: the note is stderr's first line, then the command runs as
    under its new name (here: the usage error of no input, exit status 2)."""
    new, before = _run([RENAMED[old]], tmp_path), _run([old], tmp_path)
    assert before.returncode == new.returncode == 2, before.stderr
    assert before.stdout == new.stdout
    first, rest = before.stderr.split("\n", 1)
    assert first == notice(old)
    assert rest == new.stderr and "note:" not in new.stderr


@pytest.fixture(scope="module")
def bandit_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("names")
    data, q = SyntheticBandit(seed=1, n_actions=3, dim=2).log(500)
    write_log(tmp / "log.csv", data)
    np.save(tmp / "policy.npy", Evaluation().probabilities(data.context, q))
    return tmp


def _same_under_both_names(old: str, args: list[str]) -> Any:
    """Run ``args`` under both names: the same exit, the same output; the note first."""
    new = runner.invoke(app, [RENAMED[old], *args])
    before = runner.invoke(app, [old, *args])
    assert new.exit_code == 0, new.output
    assert before.exit_code == 0, before.output
    assert before.stderr == notice(old) + "\n" + new.stderr
    # the same output, but for the wall-clock time a simulator run took
    timing = re.compile(r'"seconds_per_run": [0-9.e+-]+')
    assert timing.sub("", before.stdout) == timing.sub("", new.stdout)
    return json.loads(new.stdout)


def test_evaluate_offline_still_estimates_with_the_same_options(bandit_log: Path) -> None:
    args = ["--log", str(bandit_log / "log.csv"), "--policy-probs"]
    args += [str(bandit_log / "policy.npy"), "--estimators", "ips,snips", "--no-plot", "--json"]
    out = _same_under_both_names("evaluate-offline", args)
    assert [e["estimator"] for e in out["estimates"]] == ["ips", "snips"]


def test_evaluate_still_runs_rankers_in_a_simulator_with_the_same_options() -> None:
    pytest.importorskip("torch", reason="PyTorch is not installed")
    args = ["--env", "fusion-shop", "-p", "random", "--seeds", "0", "--json"]
    out = _same_under_both_names("evaluate", args)
    # the strongest simple baseline always runs beside what was asked for
    assert [row["policy"] for row in out] == ["random", "baseline"]
