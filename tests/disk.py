"""A real full disk for fault tests: a small tmpfs mounted for the test, and a filler
(the fault matrix's own, ``benchmarks.faults.faults``, behind a root check for pytest)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from benchmarks.faults.faults import fill, tmpfs

__all__ = ["fill", "small_tmpfs"]


@contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. "16m") mounted at ``where/disk``. Needs root: CI runs as
    root, so there a missing privilege fails the test instead of passing it by a skip."""
    if os.geteuid() != 0:
        reason = "mounting a tmpfs needs root"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with tmpfs(where / "disk", size) as mount:
        yield mount
