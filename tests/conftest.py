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
