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
        assert _healthy(url, proc, log)["pipeline"] == "external"
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
        assert _healthy(url, proc, tmp_path / "serve.log")["pipeline"] == "external"
        _learns(url)
