"""Shared fixtures: temporary loops on a fake clock; and, under
``RECLOOP_REQUIRE_SERVICES=1`` (``.ci/run`` sets it), no test of PostgreSQL, Redis or
NATS may pass by skipping."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# pytest-xdist's workers (``make unit`` runs two) set COLUMNS=80 and LINES=24. The CLI's
# rich consoles are made when recloop.cli is imported and would keep that width for good,
# so CLI output that a test widens with COLUMNS per invocation came out wrapped under
# xdist only. Without these variables a console reads the width when it prints.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)

from recloop import Loop  # noqa: E402
from recloop.core.clock import FakeClock  # noqa: E402


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


SERVICE_NAMES = re.compile(r"postgres|redis|nats|jetstream", re.IGNORECASE)
REQUIRE_SERVICES = os.environ.get("RECLOOP_REQUIRE_SERVICES") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    """A skipped test of a service is a failure when the services are required: a test
    marked ``services``, or one whose skip reason names PostgreSQL, Redis or NATS (the
    fixtures of the contract suites skip a backend they cannot reach). Without this, a CI
    machine whose database was down passed every PostgreSQL test by skipping it."""
    outcome = yield
    report = outcome.get_result()
    if not (REQUIRE_SERVICES and report.skipped):
        return
    longrepr = report.longrepr
    reason = str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)
    if item.get_closest_marker("services") is not None or SERVICE_NAMES.search(reason):
        report.outcome = "failed"
        report.longrepr = f"RECLOOP_REQUIRE_SERVICES=1, and a service test skipped: {reason}"
