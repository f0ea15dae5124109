"""Each fault as a small function: inject it into a running deployment under load, then
recover as an operator (or a supervisor) would, and say in a few words what was seen.

A fault needs some layout features (``needs``): a fault that cannot apply to a layout is
listed there as n/a with the reason, never silently skipped. The disk faults put the data
dir on a small tmpfs (PITFALLS.md: needs root); the service faults stop the deployment's
own PostgreSQL / NATS / Redis (private instances, so no one else's tests are disturbed)
and always start them again (try/finally).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.faults.audit import PostgresBackend
from benchmarks.faults.deploy import Deployment
from benchmarks.faults.processes import alive, kill, wait_for

SIGSTOP_SECONDS = 30.0
PG_OUTAGE_SECONDS = 30.0
DISK_FULL_SECONDS = 4.0


@dataclass
class Context:
    """What a fault may use besides the deployment: a scratch folder and the clock."""

    work: Path
    injected_at: float = 0.0
    scope_from: float | None = None
    """Set by a fault that deletes data on purpose: count only records sent after this."""
    cleanups: list[Callable[[], None]] = field(default_factory=list)


Inject = Callable[[Deployment, Context], str]


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Inject
    needs: frozenset[str] = frozenset()
    """Layout features: workers, stream-runner, postgres, nats, redis, data-dir."""
    setup: str = ""
    """How the deployment is made: '' (plain), 'workers', 'tmpfs', 'readonly'."""
    load_seconds: float = 0.0
    """The least load time this fault needs (its outage inside the load)."""
    fast: bool = False
    """In the CI slice."""


# -- processes --------------------------------------------------------------------------
def _one(dep: Deployment, role: str) -> int:
    pids = dep.pids(role)
    if not pids:
        raise RuntimeError(f"no {role} process found")
    return pids[0]


def kill_worker(dep: Deployment, ctx: Context) -> str:
    before = dep.pids("worker")
    victim = before[0]
    kill(victim)
    back = wait_for(lambda: len([p for p in dep.pids("worker") if p != victim]) >= len(before), 20)
    return "worker replaced" if back else f"worker not replaced ({len(before) - 1} left)"


def kill_pipeline(dep: Deployment, ctx: Context) -> str:
    victim = _one(dep, "pipeline")
    kill(victim)
    dep.restart("pipeline")
    back = wait_for(lambda: any(p != victim for p in dep.pids("pipeline")), 20)
    return "pipeline restarted" if back else "pipeline NOT restarted"


def kill_stream_runner(dep: Deployment, ctx: Context) -> str:
    victim = _one(dep, "stream")
    kill(victim)
    time.sleep(1.0)
    dep.restart("stream")
    back = wait_for(lambda: any(p != victim for p in dep.pids("stream")), 20)
    return "runner restarted" if back else "runner NOT restarted"


def kill_server(dep: Deployment, ctx: Context) -> str:
    for pid in dep.pids("server"):
        with suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # the server and its pipeline child at once
    time.sleep(1.0)
    t0 = time.monotonic()
    dep.restart("server")
    return f"restarted in {time.monotonic() - t0:.1f} s"


def stop_pipeline(dep: Deployment, ctx: Context) -> str:
    victim = _one(dep, "pipeline")
    kill(victim, signal.SIGSTOP)
    try:
        time.sleep(SIGSTOP_SECONDS)
    finally:
        kill(victim, signal.SIGCONT)
    return "resumed" if alive(victim) else "pipeline gone after SIGCONT"


# -- services (cluster) ------------------------------------------------------------------
def _service(dep: Deployment, name: str) -> Any:
    return getattr(dep, "services")[name]  # noqa: B009 - only layouts that need it have it


def restart_service(name: str, down: float = 2.0) -> Inject:
    def inject(dep: Deployment, ctx: Context) -> str:
        service = _service(dep, name)
        t0 = time.monotonic()
        try:
            service.stop()
            time.sleep(down)
        finally:
            service.start()
        return f"{name} down {time.monotonic() - t0:.1f} s"

    inject.__name__ = f"restart_{name}"
    return inject


# -- the data dir ------------------------------------------------------------------------
@contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``where`` (PITFALLS.md: the full-disk recipe; root only)."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


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


def disk_full(dep: Deployment, ctx: Context) -> str:
    filler = dep.data_dir.parent / "filler"
    fill(filler)
    try:
        time.sleep(DISK_FULL_SECONDS)
    finally:
        filler.unlink()
    return f"full for {DISK_FULL_SECONDS:.0f} s"


def remove_data_dir(dep: Deployment, ctx: Context) -> str:
    subprocess.run(["rm", "-rf", str(dep.data_dir)], check=True)
    ctx.scope_from = time.monotonic()  # what was in flight during the rm may go either way
    time.sleep(2.0)
    dep.restart("server")  # what an operator does; what was acknowledged meanwhile counts
    return "removed; server restarted"


def make_read_only(where: Path) -> None:
    """Before the start: the data dir's file system is mounted read-only."""
    (where / "data").mkdir(exist_ok=True)
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)


def read_only_then_writable(dep: Deployment, ctx: Context) -> str:
    """The server was started on a read-only data dir (before the load): after a while
    the operator makes it writable and starts the server if it is not running."""
    time.sleep(3.0)
    running = bool(dep.pids("server"))
    subprocess.run(["mount", "-o", "remount,rw", str(dep.data_dir.parent)], check=True)
    dep.restart("server")
    return "server was running read-only" if running else "server refused to start"


# -- stored models and settings ----------------------------------------------------------
def _sqlite(path: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path, timeout=30)) as conn, conn:
        return conn.execute(sql, args).fetchall()


def _pg(url: str, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, args)
        return list(cur.fetchall()) if cur.description else []


def damage_newest_model(how: str) -> Inject:
    """Freeze the learner, damage the newest stored model (garbage, or cut in half, under
    its old checksum), then kill the learner: it must resume from a store whose newest
    version is unusable, and the servers must not serve it."""

    def inject(dep: Deployment, ctx: Context) -> str:
        wait_for(lambda: len(dep.backend().model_metas()) >= 2, 20)  # an older good one
        victim = _one(dep, "pipeline")
        kill(victim, signal.SIGSTOP)
        backend = dep.backend()
        blob = (
            "randomblob(length(blob))" if how == "corrupt" else "substr(blob, 1, length(blob) / 2)"
        )
        if isinstance(backend, PostgresBackend):
            pg = (
                "decode(md5(random()::text), 'hex')"
                if how == "corrupt"
                else "substring(blob from 1 for length(blob) / 2)"
            )
            rows = _pg(
                backend.url,
                f"UPDATE recloop_models SET blob = {pg} WHERE loop = 'default' "
                "AND version = (SELECT max(version) FROM recloop_models WHERE loop = 'default') "
                "RETURNING version",
            )
        else:
            db = dep.data_dir / "default" / "models.db"
            rows = _sqlite(
                db,
                f"UPDATE models SET blob = {blob} WHERE version = "
                "(SELECT max(version) FROM models) RETURNING version",
            )
        kill(victim)
        dep.restart("pipeline")
        wait_for(lambda: any(p != victim for p in dep.pids("pipeline")), 20)
        return f"version {rows[0][0] if rows else '?'} {how}; learner killed"

    inject.__name__ = f"{how}_newest_model"
    return inject


OVERRIDES_KEY = "settings.overrides"


def corrupt_settings_override(dep: Deployment, ctx: Context) -> str:
    """Store unusable run-time overrides (not JSON), kill the learner so it starts on them,
    then put the old value back after a few seconds."""
    backend = dep.backend()
    bad = '{"epsilon": 0.3, "exp_unit_seconds": '
    if isinstance(backend, PostgresBackend):
        get = "SELECT value FROM recloop_state WHERE loop = 'default' AND key = %s"
        old = _pg(backend.url, get, (OVERRIDES_KEY,))
        _pg(
            backend.url,
            "INSERT INTO recloop_state(loop, key, value) VALUES ('default', %s, %s) "
            "ON CONFLICT (loop, key) DO UPDATE SET value = excluded.value",
            (OVERRIDES_KEY, bad),
        )

        def restore() -> None:
            if old:
                _pg(
                    backend.url,
                    "UPDATE recloop_state SET value = %s WHERE loop = 'default' AND key = %s",
                    (old[0][0], OVERRIDES_KEY),
                )
            else:
                _pg(
                    backend.url,
                    "DELETE FROM recloop_state WHERE loop = 'default' AND key = %s",
                    (OVERRIDES_KEY,),
                )
    else:
        db = dep.data_dir / "default" / "joined.db"
        old = _sqlite(db, "SELECT value FROM state WHERE key = ?", (OVERRIDES_KEY,))
        _sqlite(db, "INSERT OR REPLACE INTO state(key, value) VALUES (?, ?)", (OVERRIDES_KEY, bad))

        def restore() -> None:
            if old:
                _sqlite(db, "UPDATE state SET value = ? WHERE key = ?", (old[0][0], OVERRIDES_KEY))
            else:
                _sqlite(db, "DELETE FROM state WHERE key = ?", (OVERRIDES_KEY,))

    try:
        time.sleep(1.0)
        kill_pipeline(dep, ctx)
        time.sleep(3.0)
        unready = not dep.ready()
    finally:
        restore()
    return "readyz said not ready" if unready else "readyz stayed ready"


FAULTS = [
    Fault("kill9-worker", kill_worker, frozenset({"workers"}), setup="workers"),
    Fault("kill9-pipeline", kill_pipeline, frozenset({"pipeline"}), fast=True),
    Fault("kill9-stream-runner", kill_stream_runner, frozenset({"stream-runner"})),
    Fault("kill9-server", kill_server, frozenset(), fast=True),
    Fault(
        "sigstop-pipeline-30s",
        stop_pipeline,
        frozenset({"pipeline"}),
        load_seconds=SIGSTOP_SECONDS + 4,
    ),
    Fault("restart-postgres", restart_service("postgres"), frozenset({"postgres"})),
    Fault("restart-nats", restart_service("nats"), frozenset({"nats"})),
    Fault("restart-redis", restart_service("redis"), frozenset({"redis"})),
    Fault(
        "postgres-outage-30s",
        restart_service("postgres", PG_OUTAGE_SECONDS),
        frozenset({"postgres"}),
        load_seconds=PG_OUTAGE_SECONDS + 6,
    ),
    Fault("disk-full", disk_full, frozenset({"data-dir"}), setup="tmpfs"),
    Fault("data-dir-removed", remove_data_dir, frozenset({"data-dir"})),
    Fault("read-only-data-dir", read_only_then_writable, frozenset({"data-dir"}), setup="readonly"),
    Fault(
        "corrupt-newest-model", damage_newest_model("corrupt"), frozenset({"pipeline"}), fast=True
    ),
    Fault("truncated-model", damage_newest_model("truncate"), frozenset({"pipeline"})),
    Fault(
        "corrupt-settings-override", corrupt_settings_override, frozenset({"pipeline"}), fast=True
    ),
]
BY_NAME = {f.name: f for f in FAULTS}
