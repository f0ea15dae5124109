"""The cluster layout: the Procfile's processes (``benchmarks.cluster``), on private services.

Two ``recloop serve`` (web1, web2: each with a pipeline child; one holds the loop's lease,
the other stands by) and one ``recloop stream``, on one PostgreSQL database
(``storage_url``), the behaviour log on NATS JetStream (``stream.log_url``), the lists in
Redis (``stream.recommendations_url``). The launcher is the one ``make run-cluster``'s
tests use; this adapter points it at PostgreSQL, NATS and Redis servers private to the
matrix (``benchmarks.faults.services``), so the restart faults disturb no one else's tests,
and maps the fault roles onto its processes: ``server`` is web1 (web2 serves on),
``pipeline`` the pipeline child that holds the lease, ``stream`` the stream runner.
"""

from __future__ import annotations

import atexit
import uuid
from contextlib import suppress
from pathlib import Path

import httpx

from benchmarks.cluster import Cluster as Launcher
from benchmarks.faults.audit import Backend, PostgresBackend, nats_event_ids
from benchmarks.faults.deploy import LOOP_ENV, stream_caught_up
from benchmarks.faults.services import Services

FEATURES = frozenset({"pipeline", "stream-runner", "postgres", "nats", "redis"})
_services: Services | None = None


def shared_services() -> Services:
    """The private services of this matrix (started on first use, stopped at exit)."""
    global _services
    if _services is None:
        _services = Services()
        atexit.register(close_services)
    _services.ensure_running()
    return _services


def close_services() -> None:
    global _services
    if _services is not None:
        _services.close()
        _services = None


class Cluster:
    layout = "cluster"

    def __init__(self, run_dir: Path, services: Services) -> None:
        self.services = services
        self.data_dir = run_dir / "data"
        database = f"faults_{uuid.uuid4().hex[:10]}"
        env = {
            **LOOP_ENV,
            "PYTHONUNBUFFERED": "1",
            "RECLOOP_STORAGE_URL": services.postgres.url.rsplit("/", 1)[0] + "/" + database,
            "RECLOOP_STREAM__LOG_URL": services.nats.url,
            "RECLOOP_STREAM__RECOMMENDATIONS_URL": services.redis.url,
        }
        self.launcher = Launcher(run_dir, env, start=False)
        self.storage_url = str(self.launcher.settings.storage_url)
        self.urls = list(self.launcher.urls.values())

    def start(self, wait: bool = True) -> None:
        self.launcher.start()

    def _pid(self, name: str) -> int | None:
        proc = self.launcher.processes.get(name)
        return proc.pid if proc is not None and proc.poll() is None else None

    def pids(self, role: str) -> list[int]:
        pid: int | None = None
        if role == "server":  # one whole server (web2 keeps serving)
            pid = self._pid("web1")
        elif role == "stream":
            pid = self._pid("stream")
        elif role == "pipeline":  # the pipeline child that runs the loop now
            holder = self.launcher.lease_holder()
            pid = self.launcher.pipeline_pid(holder) if holder is not None else None
        return [] if pid is None else [pid]

    def restart(self, role: str) -> None:
        if role == "server":
            self.launcher.restart("web1")
        elif role == "stream" and self._pid("stream") is None:
            self.launcher.restart("stream")
        # a pipeline child: its server's supervisor restarts it; the standby takes over

    def backend(self) -> Backend:
        stream = self.launcher.nats_stream
        return PostgresBackend(self.storage_url, nats_event_ids(self.services.nats.url, stream))

    def stream_done(self) -> bool:
        return any(_quiet(stream_caught_up, url) for url in self.urls)

    def ready(self) -> bool:
        for url in self.urls:
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code != 200:
                    return False
            except httpx.HTTPError:
                return False
        return True

    def log_tail(self, n: int = 3000) -> str:
        parts = []
        for name in self.launcher.processes:
            with suppress(OSError):
                parts.append(self.launcher.log(name)[-n:])
        return "\n".join(parts)

    def close(self) -> None:
        self.launcher.stop()


def _quiet(check: object, url: str) -> bool:
    assert callable(check)
    try:
        return bool(check(url))
    except (httpx.HTTPError, ValueError):
        return False
