"""The scaled-out layout of the Procfile, started as separate processes for tests and faults.

``make run-cluster`` runs the Procfile with honcho, which stops everything when one process
ends. Tests and the fault suite need the opposite: kill one process (a server, its pipeline
child, the stream runner) and watch the others carry on. So this launcher reads the same
Procfile (honcho's parser) and starts each process type in a session of its own, as honcho
does, but leaves the others alone when one dies::

    from benchmarks.cluster import Cluster

    with Cluster(tmp_path, env={"RECLOOP_EXP_UNIT_SECONDS": "1"}) as cluster:
        cluster.urls                  # {"web1": "http://127.0.0.1:P1", "web2": ...}
        cluster.processes             # {"web1": Popen, "web2": Popen, "stream": Popen}
        cluster.pipeline_pid("web1")  # web1's pipeline child (from /healthz), or None
        cluster.lease_holder()        # "web1" or "web2": whose pipeline runs the loop now
        cluster.wait_lease(not_by="web1")  # until another server's pipeline took it over
        cluster.kill("web1")          # SIGKILL that process alone (its child notices)
        cluster.restart("web1")       # its whole process group killed, started, ready again
        cluster.stop()                # everything; the instance's database, stream, keys go

Each instance gets a database, a JetStream stream and a Redis key prefix of its own (so
instances and tests never see each other's data) and free ports; its processes log to
``WORKDIR/NAME.log``. ``env`` adds settings for every process (``RECLOOP_*``); services other
than the settings file's are named there too (``RECLOOP_STORAGE_URL``: its server is used,
with a database of the instance's own; ``RECLOOP_STREAM__LOG_URL``,
``RECLOOP_STREAM__RECOMMENDATIONS_URL``).

``python -m benchmarks.cluster check`` is what ``make run-cluster`` runs first: it says which
of PostgreSQL, Redis and NATS does not answer (and how to start it), and creates the
cluster's database if it is missing.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from contextlib import suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from benchmarks.common import free_port

ROOT = Path(__file__).resolve().parent.parent
PROCFILE = ROOT / "Procfile"
CONFIG = ROOT / "deploy" / "cluster.toml"
SERVERS = ("web1", "web2")
LOOP = "default"
START_COMMANDS = {
    "PostgreSQL": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "Redis": 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no',
    "NATS": "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server "
    "-- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server",
}


def read_procfile(path: Path = PROCFILE) -> dict[str, str]:
    """Process type -> command, as honcho reads it (its parser when installed)."""
    text = path.read_text()
    try:
        from honcho.environ import parse_procfile
    except ImportError:  # the same rule honcho applies: NAME: command, other lines ignored
        line = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")
        return {m[1]: m[2] for m in map(line.match, text.splitlines()) if m}
    return dict(parse_procfile(text).processes)


def _settings(env: dict[str, str] | None = None) -> Any:
    """The cluster's settings as its processes see them: the TOML file, then RECLOOP_*."""
    from recloop.settings import load_settings

    saved = dict(os.environ)
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        return load_settings(CONFIG)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _admin_url(url: str) -> tuple[str, str]:
    """(a URL of the same server's ``postgres`` database, the database name in ``url``)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(url)
    name = str(params.get("dbname") or "")
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"the cluster's database name {name!r} must be a plain lowercase name")
    return make_conninfo(url, dbname="postgres"), name


def _nats(url: str, work: Any) -> Any:
    """Run ``work(jetstream)`` against NATS at ``url`` (one short connection)."""

    async def main() -> Any:
        import nats

        async def quiet(exc: Exception) -> None:  # nats-py logs a traceback per try
            pass

        nc = await nats.connect(
            url, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0,
            error_cb=quiet,
        )  # fmt: skip
        try:
            return await work(nc.jetstream(timeout=2))
        finally:
            await nc.close()

    return asyncio.run(main())


def check_services(settings: Any) -> list[str]:
    """What does not answer, each with the command that starts it on this machine."""
    import psycopg
    import redis

    problems: list[tuple[str, str, Exception]] = []
    url = settings.storage_url or ""
    try:
        psycopg.connect(_admin_url(url)[0], connect_timeout=3).close()
    except Exception as exc:
        problems.append(("PostgreSQL", url, exc))
    recs = settings.stream.recommendations_url or ""
    try:
        redis.Redis.from_url(recs, socket_connect_timeout=2).ping()
    except Exception as exc:
        problems.append(("Redis", recs, exc))
    bus = settings.stream.log_url or ""

    async def account(js: Any) -> Any:
        return await js.account_info()

    try:
        _nats(bus, account)
    except Exception as exc:
        problems.append(("NATS", bus, exc))
    return [
        f"{what} does not answer at {where} ({type(exc).__name__}: {exc}); start it with:\n"
        f"    {START_COMMANDS[what]}"
        for what, where, exc in problems
    ]


def create_database(url: str) -> bool:
    """Create the database ``url`` names if it is missing; True if it was created."""
    import psycopg

    admin, name = _admin_url(url)
    with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        conn.execute(f'CREATE DATABASE "{name}"')
    return True


class Cluster:
    """The Procfile's processes on this machine, each in a process group of its own."""

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str] | None = None,
        *,
        procfile: Path = PROCFILE,
        start: bool = True,
        timeout: float = 120.0,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.commands = read_procfile(procfile)
        self.timeout = timeout
        tag = uuid.uuid4().hex[:10]
        base = {k: v for k, v in os.environ.items() if not k.startswith("RECLOOP_")}
        base.update(env or {})  # e.g. other services: RECLOOP_STORAGE_URL, ..._LOG_URL
        url = urlsplit(_settings(base).storage_url)  # that server, a database of our own
        self.storage_url = url._replace(path=f"/recloop_cluster_{tag}").geturl()
        self.nats_stream = f"RECLOOP_CLUSTER_{tag.upper()}"
        self.redis_prefix = f"recloop:cluster_{tag}:"
        self.env = {
            **base,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}",
            "CLUSTER_DATA": str(self.workdir / "data"),
            "WEB1_PORT": str(free_port()),
            "WEB2_PORT": str(free_port()),
            "RECLOOP_STORAGE_URL": self.storage_url,
            "RECLOOP_STREAM__NATS_STREAM": self.nats_stream,
            "RECLOOP_STREAM__RECOMMENDATIONS_PREFIX": self.redis_prefix,
        }
        self.settings = _settings(self.env)
        self.urls = {
            name: f"http://127.0.0.1:{self.env[name.upper() + '_PORT']}" for name in SERVERS
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._created = False
        if start:
            self.start()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        problems = check_services(self.settings)
        if problems:
            raise RuntimeError("\n".join(problems))
        self._created = create_database(self.settings.storage_url)
        try:
            for name in self.commands:
                self._spawn(name)
            for name in self.commands:
                self.wait_ready(name)
            self.wait_lease()
        except BaseException:
            self.stop()
            raise

    def _spawn(self, name: str) -> None:
        with (self.workdir / f"{name}.log").open("ab") as out:
            self.processes[name] = subprocess.Popen(
                ["/bin/sh", "-c", "exec " + self.commands[name]],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a group of its own, as honcho does: killpg reaches
            )  # the server and its pipeline child, and nothing else

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def wait_ready(self, name: str) -> None:
        """A server: /readyz answers 200. The stream runner: a server reads its status."""
        deadline = time.monotonic() + self.timeout
        while True:
            proc = self.processes[name]
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}):\n{self.log(name)[-3000:]}")
            if self._ready(name):
                return
            if time.monotonic() > deadline:
                tail = self.log(name)[-3000:]
                raise RuntimeError(f"{name} not ready in {self.timeout} s:\n{tail}")
            time.sleep(0.2)

    def _ready(self, name: str) -> bool:
        try:
            if name in self.urls:
                return httpx.get(self.urls[name] + "/readyz", timeout=2).status_code == 200
            for url in self.urls.values():  # any live server reads what the runner publishes
                with suppress(httpx.HTTPError):
                    age = httpx.get(url + "/v1/stream", timeout=2).json()
                    return age.get("runner_status_age_seconds") is not None
        except httpx.HTTPError:
            return False
        return False

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal that process alone (not its group): a server's pipeline child lives on
        until it notices its parent is gone, as after a real crash."""
        proc = self.processes[name]
        with suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)

    def restart(self, name: str) -> None:
        """Kill the process group of ``name`` (whatever is left of it) and start it again."""
        self._end_group(name)
        self._spawn(name)
        self.wait_ready(name)

    def _end_group(self, name: str, grace: float = 0.0) -> None:
        proc = self.processes.get(name)
        if proc is None:
            return
        if grace > 0:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace)
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the pipeline child too
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop every process, then drop what this instance created."""
        for name in list(self.processes):
            self._end_group(name, grace=15.0)
        self._drop()

    def _drop(self) -> None:
        import psycopg
        import redis

        if self._created:
            admin, name = _admin_url(self.settings.storage_url)
            with suppress(Exception), psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            self._created = False

        async def delete(js: Any) -> Any:
            return await js.delete_stream(self.nats_stream)

        with suppress(Exception):
            _nats(self.settings.stream.log_url, delete)
        with suppress(Exception):
            client = redis.Redis.from_url(self.settings.stream.recommendations_url)
            prefix = self.redis_prefix
            for pattern in (prefix + "*", prefix.rstrip(":") + "#meta:*"):
                for key in client.scan_iter(match=pattern, count=1000):
                    client.delete(key)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what runs where -------------------------------------------------------------------
    def pipeline_pid(self, name: str) -> int | None:
        """The pipeline child of server ``name``, as its /healthz says; None if it does not
        answer."""
        try:
            pid = httpx.get(self.urls[name] + "/healthz", timeout=2).json()["pipeline"]["pid"]
        except (httpx.HTTPError, KeyError, ValueError):
            return None
        return int(pid) if pid is not None else None

    def lease_pid(self, loop: str = LOOP) -> int | None:
        """The process whose session holds the loop's pipeline lease (PostgreSQL's view:
        the lease's connection names its process, ``recloop-pipeline:PID:HOST:LOOP``)."""
        import psycopg

        with psycopg.connect(self.settings.storage_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT a.application_name FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted "
                "AND a.datname = current_database() "
                "AND a.application_name LIKE 'recloop-pipeline:%%'"
            ).fetchall()
        for (application,) in rows:
            _, pid, _, rest = str(application).split(":", 3)
            if loop.startswith(rest):  # the name may have been cut at 63 bytes
                return int(pid)
        return None

    def wait_lease(
        self, loop: str = LOOP, not_by: str | None = None, timeout: float | None = None
    ) -> str:
        """Wait until a server's pipeline (other than ``not_by``) holds the loop's lease."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            holder = self.lease_holder(loop)
            if holder is not None and holder != not_by:
                return holder
            if time.monotonic() > deadline:
                raise RuntimeError(f"no pipeline took loop {loop!r} in {timeout} s")
            time.sleep(0.1)

    def lease_holder(self, loop: str = LOOP) -> str | None:
        """Which server's pipeline runs ``loop`` now (None: nobody, or someone else)."""
        pid = self.lease_pid(loop)
        if pid is None:
            return None
        return next((n for n in SERVERS if self.pipeline_pid(n) == pid), None)


def main(argv: list[str]) -> int:
    """``check``: the services answer and the cluster's database exists (make run-cluster)."""
    if argv[:1] != ["check"]:
        print("usage: python -m benchmarks.cluster check", file=sys.stderr)
        return 2
    settings = _settings()
    problems = check_services(settings)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    if create_database(settings.storage_url):
        print(f"created the cluster's database: {settings.storage_url}")
    processes = ", ".join(read_procfile())
    print(
        f"PostgreSQL {settings.storage_url}, NATS {settings.stream.log_url} "
        f"(stream {settings.stream.nats_stream}), Redis {settings.stream.recommendations_url} "
        f"(prefix {settings.stream.recommendations_prefix}) answer; starting {processes}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
