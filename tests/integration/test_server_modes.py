"""`recloop serve --workers 2` and `recloop pipeline` + an external-pipeline server: the
decisions logged by serving processes are joined and learned by the one pipeline, and
every serving process picks up the new model."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

ACTIONS = [{"id": a, "features": {"topic": a}} for a in ("news", "sports", "music")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECLOOP_")}
    env.update(RECLOOP_EXP_UNIT_SECONDS="0.5", RECLOOP_CHECKPOINT_EVERY_EXAMPLES="10", **extra)
    return env


@contextmanager
def _process(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
        with suppress(httpx.TransportError):
            r = httpx.get(url + "/healthz", timeout=1)
            if r.status_code == 200:
                body: dict[str, object] = r.json()
                return body
        time.sleep(0.1)


def _learns(url: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        for i in range(30):
            body = client.post("/v1/rank", json={"context": {"i": i % 3}, "actions": ACTIONS})
            assert body.status_code == 200, body.text
            event_id = body.json()["event_id"]
            client.post(f"/v1/events/{event_id}/reward", json={"value": 1.0}).raise_for_status()
        deadline = time.monotonic() + 20
        while True:
            versions = client.get("/v1/models").json()["versions"]
            if versions and versions[0]["meta"]["learner_offset"] >= 30:
                break
            assert time.monotonic() < deadline, versions
            time.sleep(0.1)
        # every serving process (requests spread over fresh connections) serves a model
        seen: set[str] = set()
        while time.monotonic() < deadline and seen != {versions[0]["version"]}:
            seen = set()
            for _ in range(8):
                with httpx.Client(base_url=url, timeout=10) as fresh:
                    r = fresh.post("/v1/rank", json={"context": {}, "actions": ACTIONS})
                    seen.add(r.json()["model_version"])
            time.sleep(0.2)
        assert "default" not in seen, seen


def test_serve_with_two_workers(tmp_path: Path) -> None:
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "recloop.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(tmp_path / "data"),
        "--workers",
        "2",
    ]
    log = tmp_path / "serve.log"
    with _process(cmd, _env(), log) as proc:
        url = f"http://127.0.0.1:{port}"
        assert _healthy(url, proc, log)["pipeline"]["mode"] == "external"
        _learns(url)
        # whichever worker answers, /metrics shows loop totals (all workers + the pipeline)
        deadline = time.monotonic() + 10
        totals: list[float] = []
        while time.monotonic() < deadline:
            totals = [_metric(url, "recloop_decisions_total") for _ in range(6)]
            if min(totals) >= 30 and _metric(url, "recloop_joins_total") >= 30:
                break
            time.sleep(0.2)
        assert min(totals) >= 30, totals


def _metric(url: str, name: str) -> float:
    with httpx.Client(base_url=url, timeout=10) as fresh:
        for line in fresh.get("/metrics").text.splitlines():
            if line.startswith(name + '{loop="default"}'):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_external_pipeline_command(tmp_path: Path) -> None:
    port = _free_port()
    data = str(tmp_path / "data")
    serve = [
        sys.executable,
        "-m",
        "recloop.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        data,
    ]
    pipeline = [sys.executable, "-m", "recloop.cli", "pipeline", "--data-dir", data]
    with (
        _process(pipeline, _env(), tmp_path / "pipeline.log"),
        _process(serve, _env(RECLOOP_PIPELINE="external"), tmp_path / "serve.log") as proc,
    ):
        url = f"http://127.0.0.1:{port}"
        assert _healthy(url, proc, tmp_path / "serve.log")["pipeline"]["mode"] == "external"
        _learns(url)


def test_two_servers_share_postgres_and_a_standby_pipeline_takes_over(tmp_path: Path) -> None:
    """Two servers (separate data dirs, one PostgreSQL): one pipeline runs, the other
    stands by; after kill -9 of the first server, the second's pipeline takes over."""
    import signal
    import uuid

    import pytest

    url = os.environ.get("RECLOOP_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")
    try:
        import psycopg

        psycopg.connect(url, connect_timeout=3).close()
    except Exception as exc:
        pytest.skip(f"PostgreSQL not reachable at {url}: {exc}")
    loop = f"ha-{uuid.uuid4().hex[:10]}"
    config = tmp_path / "recloop.toml"
    config.write_text(f'[loops.{loop}]\nstorage_url = "{url}"\n')  # default loop: SQLite
    ports = [_free_port(), _free_port()]

    def serve(i: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "recloop.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(ports[i]),
            "--data-dir",
            str(tmp_path / f"d{i}"),
            "--config",
            str(config),
        ]

    with _process(serve(0), _env(), tmp_path / "a.log") as first:
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        _healthy(urls[0], first, tmp_path / "a.log")
        deadline = time.monotonic() + 20
        while "runs loop " + loop not in (tmp_path / "a.log").read_text(errors="replace"):
            assert time.monotonic() < deadline, "the first server's pipeline never started"
            time.sleep(0.1)
        second_cm = _process(serve(1), _env(), tmp_path / "b.log")
        second = second_cm.__enter__()
        _healthy(urls[1], second, tmp_path / "b.log")
        prefix = f"/v1/loops/{loop}"

        def rank_and_wait_joined(base: str, count: int) -> None:
            with httpx.Client(base_url=base, timeout=10) as client:
                ids = [
                    client.post(f"{prefix}/rank", json={"context": {}, "actions": ACTIONS}).json()[
                        "event_id"
                    ]
                    for _ in range(count)
                ]
                deadline = time.monotonic() + 20
                while client.get(f"{prefix}/evaluations").json()["examples"] < count:
                    assert time.monotonic() < deadline, "decisions were never joined"
                    time.sleep(0.2)
                assert len(set(ids)) == count

        try:
            rank_and_wait_joined(urls[1], 10)  # logged via B, joined by A's pipeline
            assert "runs loop " + loop not in (tmp_path / "b.log").read_text(errors="replace")
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            rank_and_wait_joined(urls[1], 20)  # only B is left: its standby took over
            assert "runs loop " + loop in (tmp_path / "b.log").read_text(errors="replace")
        finally:
            second_cm.__exit__(None, None, None)


def test_serve_with_two_workers_restarts_a_killed_pipeline(tmp_path: Path) -> None:
    """With several workers the parent runs the pipeline process: killed, it was gone for
    good (nothing joined or learned again) while the workers kept answering 2xx."""
    import signal

    port = _free_port()
    data = tmp_path / "data"
    cmd = [sys.executable, "-m", "recloop.cli", "serve", "--port", str(port)]
    cmd += ["--data-dir", str(data), "--workers", "2"]
    log = tmp_path / "serve.log"
    lock = data / "default" / "pipeline.lock"
    with _process(cmd, _env(), log) as proc:
        url = f"http://127.0.0.1:{port}"
        _healthy(url, proc, log)
        deadline = time.monotonic() + 20
        while not (lock.exists() and lock.read_text().strip()):
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.1)
        first = int(lock.read_text())
        os.kill(first, signal.SIGKILL)
        while True:  # a new pipeline process takes the lease
            text = lock.read_text().strip() if lock.exists() else ""
            if text and int(text) != first:
                break
            assert time.monotonic() < deadline + 10, log.read_text(errors="replace")[-3000:]
            time.sleep(0.1)
        _learns(url)  # and joins and learns what the workers log
