"""PyTorch's thread counts in recloop serve's processes: one to serve, all cores but one to
train, and whatever the user set left alone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from recloop.serving import threads


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.delenv(threads._OURS, raising=False)
    return monkeypatch


def test_serving_gets_one_thread_and_the_pipeline_all_cores_but_one(
    env: pytest.MonkeyPatch,
) -> None:
    threads.serve_on_one_thread()
    assert os.environ[threads.ENV] == "1"
    # the pipeline process inherits the serving process's environment, and resets it
    env.setattr(os, "cpu_count", lambda: 8)
    threads.train_on_all_cores_but_one()
    assert os.environ[threads.ENV] == "7"


def test_a_users_own_setting_is_kept_in_both_processes(env: pytest.MonkeyPatch) -> None:
    env.setenv(threads.ENV, "3")
    threads.serve_on_one_thread()
    assert os.environ[threads.ENV] == "3"
    threads.train_on_all_cores_but_one()
    assert os.environ[threads.ENV] == "3"


def test_pytorch_loaded_afterwards_runs_on_one_thread_in_every_thread(
    env: pytest.MonkeyPatch,
) -> None:
    """The reason for the environment: torch.set_num_threads would hold for the calling
    thread only, not for the threads that answer requests."""
    pytest.importorskip("torch", reason="PyTorch is not installed")
    code = (
        "import threading\n"
        "from recloop.serving.threads import serve_on_one_thread\n"
        "serve_on_one_thread()\n"
        "import torch\n"
        "seen = []\n"
        "t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))\n"
        "t.start(); t.join()\n"
        "print(torch.get_num_threads(), seen[0])\n"
    )
    env.setattr(os, "cpu_count", lambda: 2)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert out == ["1", "1"]
