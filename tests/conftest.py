"""Shared fixtures: temporary loops on a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from recloop import Loop
from recloop.core.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def loop(tmp_path: Path, clock: FakeClock) -> Iterator[Loop]:
    lp = Loop.open(tmp_path, start=False, clock=clock, exp_unit_seconds=5.0)
    yield lp
    lp.close()


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Small networks: one thread is as fast, and seeded training then repeats exactly
    (multi-threaded sums round differently, and learning amplifies it)."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
