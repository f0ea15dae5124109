"""The deployments the faults are injected into, behind one small interface.

A deployment starts its processes, says where its servers answer (``urls``), finds a
process by role (``pids``), starts again what a fault killed (``restart``), reads its
stores for the audit (``backend``) and says when its stream has caught up
(``stream_done``). The embedded default is here; the cluster layout (several processes on
PostgreSQL, NATS and Redis) is in ``benchmarks.faults.cluster``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

from benchmarks.common import free_port
from benchmarks.faults.audit import Backend, SqliteBackend
from benchmarks.faults.processes import pipeline_processes, serving_processes, wait_for

EXP_UNIT_SECONDS = 2.0
LOOP_ENV = {
    "RECLOOP_EXP_UNIT_SECONDS": str(EXP_UNIT_SECONDS),
    "RECLOOP_CHECKPOINT_EVERY_EXAMPLES": "50",
    "RECLOOP_CHECKPOINT_EVERY_SECONDS": "1.0",
    "RECLOOP_STREAM__SNAPSHOT_EVERY_SECONDS": "1.0",
}
"""Short windows and frequent checkpoints: a fault lands among open windows and fresh
model versions, and a run settles within seconds of the load."""


class Deployment(Protocol):
    layout: str
    urls: list[str]
    data_dir: Path

    def start(self, wait: bool = True) -> None: ...

    def pids(self, role: str) -> list[int]:
        """``server`` (the processes of one whole server), ``worker`` (serving processes),
        ``pipeline``, ``stream`` (the stream runner): [] where the role does not exist."""
        ...

    def restart(self, role: str) -> None:
        """Start again what a fault killed (a supervisor may have done it already)."""
        ...

    def backend(self) -> Backend: ...

    def stream_done(self) -> bool: ...

    def ready(self) -> bool: ...

    def log_tail(self, n: int = 3000) -> str: ...

    def close(self) -> None: ...


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECLOOP_")}
    env.update(PYTHONUNBUFFERED="1", **LOOP_ENV, **extra)
    return env


def get_json(url: str) -> dict[str, object]:
    resp = httpx.get(url, timeout=2)
    body = resp.json()
    assert isinstance(body, dict)
    return body


def stream_caught_up(url: str) -> bool:
    """The stream processed everything in its log (what its status says)."""
    status = get_json(url + "/v1/stream")
    return bool(status.get("processed_offset") == status.get("logged_offset"))


@dataclass
class ServerProcess:
    """``recloop serve`` in a session of its own (its children die with a group kill)."""

    data_dir: Path
    log: Path
    env: dict[str, str]
    workers: int = 1
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True, timeout: float = 60.0) -> None:
        cmd = [sys.executable, "-m", "recloop.cli", "serve", "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port), "--data-dir", str(self.data_dir)]
        cmd += ["--log-level", "warning", "--workers", str(self.workers)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        if wait and not wait_for(self.healthy, timeout):
            raise RuntimeError(f"server never became healthy:\n{self.tail()}")

    def healthy(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            return False
        with suppress(httpx.HTTPError):
            return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
        return False

    def kill_all(self) -> None:
        """SIGKILL the whole process group (the server and its children)."""
        if self.proc is not None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            with suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=15)
        with suppress(ProcessLookupError):  # anything left of the group
            os.killpg(self.proc.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


class Embedded:
    """The embedded default: one ``recloop serve`` (SQLite under the data dir, the
    pipeline in a child process, the stream runner inside the server); ``workers=2`` for
    the worker kill."""

    layout = "embedded"

    def __init__(self, data_dir: Path, log: Path, workers: int = 1) -> None:
        self.data_dir = data_dir
        self.server = ServerProcess(data_dir, log, clean_env({}), workers)
        self.urls = [self.server.url]

    def start(self, wait: bool = True) -> None:
        self.server.start(wait)

    def pids(self, role: str) -> list[int]:
        proc = self.server.proc
        if proc is None or proc.poll() is not None:
            return []
        if role == "server":
            return [proc.pid]
        if role == "worker":
            return serving_processes(proc.pid, self.server.port) if self.server.workers > 1 else []
        if role == "pipeline":
            return pipeline_processes(proc.pid, self.server.port)
        return []  # the stream runner is a thread of the server

    def restart(self, role: str) -> None:
        if role == "server":
            self.server.kill_all()
            self.server.start()
        # the supervisors bring back a pipeline process or a worker by themselves

    def backend(self) -> Backend:
        return SqliteBackend(self.data_dir)

    def stream_done(self) -> bool:
        return stream_caught_up(self.urls[0])

    def ready(self) -> bool:
        with suppress(httpx.HTTPError):
            return httpx.get(self.urls[0] + "/readyz", timeout=2).status_code == 200
        return False

    def log_tail(self, n: int = 3000) -> str:
        return self.server.tail(n)

    def close(self) -> None:
        self.server.stop()


def wait_ready(dep: Deployment, timeout: float) -> float | None:
    """Seconds until the deployment answers /readyz 200 (None: not within ``timeout``)."""
    t0 = time.monotonic()
    return time.monotonic() - t0 if wait_for(dep.ready, timeout, 0.2) else None
