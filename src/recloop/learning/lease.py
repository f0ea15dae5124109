"""One pipeline per loop: an exclusive file lock that the kernel releases when its holder
dies, so a restarted server's pipeline takes over cleanly, even after kill -9."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import Protocol

from recloop.core.errors import LeaseBusyError, LeaseLostError

__all__ = ["Lease", "LeaseBusyError", "LeaseLostError", "PipelineLease", "acquire_lease"]


class PipelineLease:
    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, path: Path, wait_seconds: float) -> PipelineLease:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LeaseBusyError(
                        f"another process runs the pipeline of {path.parent} "
                        f"(lock {path} held for {wait_seconds}s)"
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        return cls(fd, path)

    def held(self) -> bool:
        """A file lock lasts as long as the process holding it."""
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class Lease(Protocol):
    def held(self) -> bool:
        """Still ours? (Checked by the pipeline before it goes on.)"""
        ...

    def release(self) -> None: ...


def acquire_lease(storage_url: str | None, loop_dir: Path, wait_seconds: float) -> Lease:
    """A file lock beside SQLite files; an advisory lock in PostgreSQL (across machines)."""
    if storage_url:
        from recloop.stores.postgres_lease import PostgresLease

        return PostgresLease(storage_url, loop_dir.name, wait_seconds)
    return PipelineLease.acquire(loop_dir / "pipeline.lock", wait_seconds)
