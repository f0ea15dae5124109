"""Private PostgreSQL, NATS JetStream and Redis servers for the cluster layout.

Each runs on a free loopback port, started and stopped by its PID, so that stopping one
(a restart fault, a 30-s outage) never disturbs the shared services on 5432/4222/6379
that other tests use at the same time. ``stop()`` then ``start()`` is a restart: the same
port, and for PostgreSQL and NATS the same store on disk (Redis keeps nothing on disk,
as on these machines: PITFALLS.md).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from contextlib import suppress
from pathlib import Path

from benchmarks.common import free_port

PG_BIN = Path("/usr/lib/postgresql")


def _binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise RuntimeError(f"{name} is not installed")
    return found


def _port_open(port: int) -> bool:
    with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


class Service:
    """One server process. ``stop()`` ends it by its PID (``stop_signal``), ``start()``
    runs it again and waits until it takes connections."""

    stop_signal = signal.SIGTERM

    def __init__(self, argv: list[str], port: int, user: str | None = None) -> None:
        self.argv, self.port, self.user = argv, port, user
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=self.user,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.argv[0]} did not start")
            time.sleep(0.05)

    def ready(self) -> bool:
        return _port_open(self.port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None


class Redis(Service):
    def __init__(self) -> None:
        port = free_port()
        argv = [_binary("redis-server"), "--bind", "127.0.0.1", "--port", str(port)]
        super().__init__([*argv, "--save", "", "--appendonly", "no"], port)
        self.url = f"redis://127.0.0.1:{port}/0"

    def flush(self) -> None:
        import redis

        redis.Redis.from_url(self.url).flushall()


class Nats(Service):
    def __init__(self, store: Path) -> None:
        port = free_port()
        argv = [_binary("nats-server"), "-a", "127.0.0.1", "-p", str(port), "-js"]
        super().__init__([*argv, "-sd", str(store)], port)
        self.url = f"nats://127.0.0.1:{port}"

    def ready(self) -> bool:
        if not _port_open(self.port):
            return False
        time.sleep(0.3)  # JetStream answers a moment after the port opens
        return True


class Postgres(Service):
    """A cluster of its own (initdb into a fresh folder owned by ``postgres``)."""

    stop_signal = signal.SIGINT  # "fast" shutdown, as pg_ctl stop -m fast

    def __init__(self) -> None:
        versions = sorted(PG_BIN.iterdir()) if PG_BIN.is_dir() else []
        if not versions or os.geteuid() != 0:
            raise RuntimeError("a private PostgreSQL needs root and /usr/lib/postgresql")
        bin_dir = versions[-1] / "bin"
        self.folder = Path(tempfile.mkdtemp(prefix="recloop-faults-pg-"))
        owner = pwd.getpwnam("postgres")
        os.chown(self.folder, owner.pw_uid, owner.pw_gid)
        data = self.folder / "data"
        subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
            user="postgres",
        )
        port = free_port()
        argv = [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port)]
        argv += ["-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.folder}"]
        super().__init__(argv, port, user="postgres")
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def ready(self) -> bool:
        import psycopg

        try:
            psycopg.connect(self.url, connect_timeout=1).close()
        except psycopg.OperationalError:
            return False
        return True

    def create_database(self) -> str:
        import psycopg

        name = f"faults_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.url, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        return self.url.rsplit("/", 1)[0] + "/" + name

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class Services:
    """The three, started together; ``close()`` stops them and removes their stores."""

    def __init__(self) -> None:
        self.store = Path(tempfile.mkdtemp(prefix="recloop-faults-js-"))
        self.postgres = Postgres()
        self.nats = Nats(self.store)
        self.redis = Redis()
        self.by_name: dict[str, Service] = {
            "postgres": self.postgres,
            "nats": self.nats,
            "redis": self.redis,
        }
        try:
            for service in self.by_name.values():
                service.start()
        except Exception:
            self.close()
            raise

    def __getitem__(self, name: str) -> Service:
        return self.by_name[name]

    def ensure_running(self) -> None:
        """Start any that a failed fault left stopped."""
        for service in self.by_name.values():
            if service.proc is None or service.proc.poll() is not None:
                service.start()

    def close(self) -> None:
        for service in self.by_name.values():
            with suppress(Exception):
                service.stop()
        self.postgres.remove()
        shutil.rmtree(self.store, ignore_errors=True)
