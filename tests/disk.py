"""A real full disk for fault tests: a small tmpfs mounted for the test, and a filler."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. "16m") mounted at ``where/disk``. Needs root: CI runs as
    root, so there a missing privilege fails the test instead of passing it by a skip."""
    if os.geteuid() != 0:
        reason = "mounting a tmpfs needs root"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    mount = where / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path) -> None:
    """Take every free block of the file system ``path`` is on."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:
        pass
    finally:
        os.close(fd)
