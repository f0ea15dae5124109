"""A private Redis and NATS JetStream for the fault tests: real servers on free loopback
ports, started and stopped by the test (by PID), so that stopping one never disturbs
the shared services on 6379/4222 other tests use at the same time."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from recloop.settings import StreamSettings
from recloop.streaming.service import Stream
from tests.e2e.conftest import free_port


def unusable(reason: str) -> None:
    if os.environ.get("CI"):  # CI has both binaries: never pass by skipping there
        pytest.fail(reason)
    pytest.skip(reason)


def _binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if found is None:
        unusable(f"{name} is not installed")
    assert found is not None
    return found


def _wait(check: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # not up yet
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start")


class Service:
    """One server process; ``stop()`` ends it by its PID, ``start()`` runs it again on the
    same port (and, for NATS, the same JetStream store)."""

    def __init__(self, argv: list[str], port: int) -> None:
        self.argv, self.port = argv, port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait(self.ready, " ".join(self.argv[:1]))

    def ready(self) -> bool:
        raise NotImplementedError

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None


class RedisServer(Service):
    def __init__(self) -> None:
        port = free_port()
        super().__init__(
            [_binary("redis-server"), "--bind", "127.0.0.1", "--port", str(port),
             "--save", "", "--appendonly", "no"],
            port,
        )  # fmt: skip
        self.url = f"redis://127.0.0.1:{port}/0"

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url, socket_connect_timeout=1)

    def ready(self) -> bool:
        return bool(self.client().ping())


class NatsServer(Service):
    def __init__(self, store: Path) -> None:
        port = free_port()
        super().__init__(
            [_binary("nats-server"), "-a", "127.0.0.1", "-p", str(port), "-js",
             "-sd", str(store)],
            port,
        )  # fmt: skip
        self.url = f"nats://127.0.0.1:{port}"

    def ready(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            pass

        async def jetstream_answers() -> None:
            import nats

            nc = await nats.connect(self.url, connect_timeout=1, allow_reconnect=False)
            try:
                await nc.jetstream(timeout=1).account_info()
            finally:
                await nc.close()

        asyncio.run(jetstream_answers())
        return True


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, NatsServer]]:
    redis_server = RedisServer()
    nats_server = NatsServer(tmp_path_factory.mktemp("jetstream"))
    try:
        redis_server.start()
        nats_server.start()
        yield redis_server, nats_server
    finally:
        redis_server.stop()
        nats_server.stop()


def stream_settings(
    redis_server: RedisServer, nats_server: NatsServer, name: str, **extra: Any
) -> dict[str, Any]:
    """A scale-out stream: events over NATS, lists in Redis, the runner elsewhere. The
    lists use the default key prefix: the private Redis is emptied for each test."""
    redis_server.client().flushall()
    return {
        "runner": "external",
        "log_url": nats_server.url,
        "nats_stream": name,
        "recommendations_url": redis_server.url,
        "snapshot_every_seconds": 0.2,
        **extra,
    }


@contextmanager
def external_runner(settings: dict[str, Any], data_dir: Path) -> Iterator[Stream]:
    """``recloop stream`` in this process: its own data directory, nothing shared with
    the server but NATS and Redis."""
    stream = Stream(StreamSettings(**{**settings, "runner": "embedded"}), data_dir, run=True)
    try:
        assert stream.runner is not None
        yield stream
    finally:
        stream.close()


def wait_for(check: Any, what: str, timeout: float = 20.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


def tracebacks(records: list[logging.LogRecord]) -> list[str]:
    """Log records that carry a traceback (an outage must log a warning line, not one)."""
    return [f"{r.name}: {r.getMessage()}" for r in records if r.exc_info]
