"""Web API throughput and latency: ``recloop serve`` under a loopback load generator.

The server runs as a subprocess (one uvicorn process, as ``recloop serve`` starts it) on a
free 127.0.0.1 port with a temporary data dir holding a trained model. The load generator
is an asyncio keep-alive HTTP/1.1 client in this process (uvloop when available), with 64
connections. Two phases per server:

* saturation: closed loop, each connection sends its next request as soon as it has an
  answer -> rank/s and the latency at that load;
* paced: open loop at the goal rate (4000/s) spread over the connections; latency counts from
  each request's scheduled time, so a server that falls behind is charged for the queue.

Servers, started together and measured one at a time, phase by phase (interleaved, so a
change in the machine's load hits them alike):

* ``recloop``: ``exp_unit_seconds=1`` so its pipeline joins, learns, checkpoints and swaps
  models during the measurement, as in a steady state;
* ``serve_only``: the same with a window that does not close during the run (serving only:
  shows what the in-process pipeline costs the web tier);
* ``yardstick``: ``benchmarks/yardstick_app.py`` (VW predict on text + one SQLite commit per
  request), served by uvicorn the same way.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from benchmarks.common import (
    cli,
    descendants,
    figure,
    free_port,
    peak_rss_mb,
    print_table,
    rss_mb,
    summarize,
    synthetic_requests,
    synthetic_reward,
    tree_cpu_seconds,
    tree_rss_mb,
)
from recloop import Loop
from recloop.core.clock import FakeClock

BENCH = "web_api"
HOST = "127.0.0.1"
CONNECTIONS = 64
MODERATE_RATE = 1000.0  # a load every server here sustains: latency without queueing
GOAL_RATE = 4000.0
GOAL_P99_MS = 20.0
SERVER_EXP_UNIT = 1.0
ROOT = Path(__file__).resolve().parents[1]


# -- load generator -------------------------------------------------------------------------
@dataclass
class PhaseResult:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    wall_s: float = 0.0
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    offered: int = 0
    """Paced phases: requests scheduled before the end (sent or not)."""

    @property
    def ok(self) -> int:
        return len(self.latencies_ms)

    @property
    def rate(self) -> float:
        return self.ok / self.wall_s if self.wall_s else 0.0


def _raw_requests(port: int, path: str, bodies: Sequence[bytes]) -> list[bytes]:
    return [
        (
            f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(b)}\r\n\r\n"
        ).encode()
        + b
        for b in bodies
    ]


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
            break
    if length:
        await reader.readexactly(length)
    return status


async def _drive(
    port: int,
    requests: Sequence[bytes],
    seconds: float,
    rate: float | None,
    max_requests: int,
    server_pid: int,
) -> PhaseResult:
    """Run one phase; ``rate`` None = closed loop, else open loop at ``rate`` requests/s."""
    result = PhaseResult(offered=int(seconds * rate) if rate else 0)
    counter = 0
    conns = [await asyncio.open_connection(HOST, port) for _ in range(CONNECTIONS)]
    start = time.perf_counter()
    stop_at = start + seconds
    cpu0, srv0 = time.process_time(), tree_cpu_seconds(server_pid)

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal counter
        while counter < max_requests:
            i = counter
            counter += 1
            if rate is None:
                begin = time.perf_counter()
            else:
                begin = start + i / rate  # scheduled time: queueing delay counts
                delay = begin - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            if begin >= stop_at or time.perf_counter() >= stop_at:
                return  # paced: requests not sent by the end count as missed
            try:
                writer.write(requests[i % len(requests)])
                status = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                result.errors += 1
                return
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status == 200:
                result.latencies_ms.append((time.perf_counter() - begin) * 1e3)
            else:
                result.errors += 1

    try:
        await asyncio.wait_for(
            asyncio.gather(*(worker(r, w) for r, w in conns)), timeout=seconds + 15.0
        )
    finally:
        result.wall_s = time.perf_counter() - start
        result.client_cpu_s = time.process_time() - cpu0
        result.server_cpu_s = tree_cpu_seconds(server_pid) - srv0
        for _, writer in conns:
            writer.close()
    return result


def _run_async(coro: Any) -> Any:
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    except ImportError:
        return asyncio.run(coro)


# -- servers --------------------------------------------------------------------------------
def _http(port: int, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        payload = None if body is None else orjson.dumps(body)
        headers = {} if body is None else {"Content-Type": "application/json"}
        conn.request(method, path, body=payload, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM it when its parent dies."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Server:
    """A server subprocess on loopback; always stopped by ``stop`` (use try/finally)."""

    def __init__(
        self, name: str, cmd: list[str], env: dict[str, str], port: int, log_path: Path
    ) -> None:
        self.name, self.port, self.log_path = name, port, log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # no orphaned server if this process is killed
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            try:
                if _http(self.port, "GET", "/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready in {timeout}s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-3000:]

    def describe_failure(self) -> str:
        code = self.proc.poll()
        state = "still running" if code is None else f"exited with {code}"
        return f"{self.name} ({state}); its log:\n{self.log_tail()}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


def _child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECLOOP_", "YARDSTICK_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def _pretrain(data_dir: Path, model_path: Path, requests: list[Any], n: int) -> str:
    """Learn ``n`` events into ``data_dir`` (so the server starts with a real model) and
    write the same model to ``model_path`` for the yardstick."""
    clock = FakeClock(time.time() - 600.0)
    loop = Loop.open(data_dir, start=False, clock=clock, checkpoint_every_examples=n)
    try:
        for i in range(n):
            context, actions = requests[i % len(requests)]
            d = loop.rank(context, actions)
            if synthetic_reward(context, actions[d.chosen_index]["features"]):
                loop.reward(d.event_id, 1.0)
        clock.advance(60.0)
        loop.step()
        version = loop.model_version
        if not version.isdigit():
            raise RuntimeError("pre-training produced no model")
        model_path.write_bytes(loop.models.get(version)[1])
    finally:
        loop.close()
    return version


def _metrics(port: int) -> dict[str, float]:
    status, text = _http(port, "GET", "/metrics")
    out: dict[str, float] = {}
    if status != 200:
        return out
    for line in text.decode().splitlines():
        if line.startswith("recloop_") and 'loop="default"' in line:
            name = line.split("{", 1)[0]
            try:
                out[name] = float(line.rsplit(" ", 1)[1])
            except ValueError:
                continue
    return out


def _wait_drained(server: Server, timeout: float = 6.0) -> None:
    """Wait until a recloop server's pipeline has joined and learned all it has (so its
    trailing work does not eat into the next server's measurement)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = _metrics(server.port)
        if not m.get("recloop_joiner_pending") and not m.get("recloop_learner_lag_examples"):
            return
        time.sleep(0.2)


def _phase(
    server: Server, requests: list[bytes], seconds: float, rate: float | None
) -> PhaseResult:
    try:
        return _run_async(_drive(server.port, requests, seconds, rate, 400_000, server.proc.pid))
    except Exception:
        print(server.describe_failure(), file=sys.stderr)
        raise


def _figures(
    prefix: str, phases: dict[str, PhaseResult], pid: int, goals: bool
) -> list[dict[str, Any]]:
    sat = phases["saturation"]
    s = summarize(sat.latencies_ms)
    rows = [
        figure(
            BENCH,
            f"{prefix}rank_per_s",
            sat.rate,
            GOAL_RATE if goals else None,
            sat.ok,
            connections=CONNECTIONS,
            errors=sat.errors,
            seconds=sat.wall_s,
        ),
        figure(BENCH, f"{prefix}saturated_p50_ms", s["p50"], None, sat.ok),
        figure(BENCH, f"{prefix}saturated_p99_ms", s["p99"], None, sat.ok),
    ]
    if "paced_1000" in phases:
        moderate = phases["paced_1000"]
        m = summarize(moderate.latencies_ms)
        rows.append(
            figure(
                BENCH,
                f"{prefix}p99_ms_at_{int(MODERATE_RATE)}_per_s",
                m["p99"],
                None,
                moderate.ok,
                p50_ms=m["p50"],
                achieved_per_s=moderate.rate,
                errors=moderate.errors,
            )
        )
    if "paced" in phases:
        paced = phases["paced"]
        p = summarize(paced.latencies_ms)
        rows.append(
            figure(
                BENCH,
                f"{prefix}paced_p99_ms",
                p["p99"],
                GOAL_P99_MS if goals else None,
                paced.ok,
                offered_per_s=GOAL_RATE,
                achieved_per_s=paced.rate,
                p50_ms=p["p50"],
                errors=paced.errors,
                missed=max(paced.offered - paced.ok - paced.errors, 0),
            )
        )
    rows.append(
        figure(
            BENCH,
            f"{prefix}server_cpu_cores",
            sat.server_cpu_s / sat.wall_s,
            None,
            sat.ok,
            loadgen_cpu_cores=sat.client_cpu_s / sat.wall_s,
            server_cpu_ms_per_rank=1e3 * sat.server_cpu_s / max(sat.ok, 1),
        )
    )
    rows.append(
        figure(
            BENCH,
            f"{prefix}server_rss_mb",
            tree_rss_mb(pid),
            None,
            serving_process_rss_mb=rss_mb(pid),
            peak_serving_rss_mb=peak_rss_mb(pid),
            processes=len(descendants(pid)),
        )
    )
    return rows


def _check_recloop(server: Server, body: bytes) -> None:
    """One rank and one reward by hand: the API answers as documented."""
    status, raw = _http(server.port, "POST", "/v1/rank", orjson.loads(body))
    if status != 200:
        raise RuntimeError(f"rank failed: {status} {raw[:300]!r}")
    event_id = orjson.loads(raw)["event_id"]
    status, raw = _http(server.port, "POST", f"/v1/events/{event_id}/reward", {"value": 1.0})
    if status != 202:
        raise RuntimeError(f"reward failed: {status} {raw[:300]!r}")


def main(quick: bool = False) -> list[dict[str, Any]]:
    payloads = synthetic_requests(256, seed=4)
    bodies = [orjson.dumps({"context": c, "actions": a}) for c, a in payloads]
    warm_s, sat_s, paced_s = (1.0, 3.0, 3.0) if quick else (2.0, 8.0, 6.0)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="recloop-bench-web-") as tmp_name:
        tmp = Path(tmp_name)
        model = tmp / "model.vw"
        version = _pretrain(tmp / "data", model, payloads, 1000 if quick else 2000)
        shutil.copytree(tmp / "data", tmp / "data-serve-only")

        def recloop(name: str, data: str, exp_unit: float, workers: int = 1) -> Server:
            port = free_port()
            cmd = [sys.executable, "-m", "recloop.cli", "serve", "--host", HOST]
            cmd += ["--workers", str(workers)]
            cmd += ["--port", str(port), "--data-dir", str(tmp / data), "--log-level", "warning"]
            env = _child_env(RECLOOP_EXP_UNIT_SECONDS=str(exp_unit))
            return Server(name, cmd, env, port, tmp / f"{name}.log")

        def yardstick() -> Server:
            port = free_port()
            cmd = [sys.executable, "-m", "uvicorn", "benchmarks.yardstick_app:app"]
            cmd += ["--host", HOST, "--port", str(port), "--log-level", "warning"]
            cmd += ["--no-access-log"]
            env = _child_env(YARDSTICK_MODEL=str(model), YARDSTICK_DB=str(tmp / "yardstick.db"))
            return Server("yardstick", cmd, env, port, tmp / "yardstick.log")

        servers: dict[str, Server] = {}
        try:
            # recloop as a steady state (its pipeline joins, learns and checkpoints during
            # the run); the same with no window closing during the run (serving only); the
            # yardstick. Started together, measured one at a time, interleaved.
            servers["recloop"] = recloop("recloop", "data", SERVER_EXP_UNIT)
            servers["serve_only"] = recloop("serve_only", "data-serve-only", 3600.0)
            servers["workers2"] = recloop("workers2", "data-workers2", SERVER_EXP_UNIT, workers=2)
            servers["yardstick"] = yardstick()
            for server in servers.values():
                server.wait_ready()
            _check_recloop(servers["recloop"], bodies[0])
            reqs = {k: _raw_requests(v.port, "/v1/rank", bodies) for k, v in servers.items()}
            results: dict[str, dict[str, PhaseResult]] = {k: {} for k in servers}
            for kind, seconds, rate in [
                ("warmup", warm_s, None),
                ("saturation", sat_s, None),
                ("paced", paced_s, GOAL_RATE),
                ("paced_1000", paced_s, MODERATE_RATE),
            ]:
                for key, server in servers.items():
                    if kind.startswith("paced") and key in ("serve_only", "workers2"):
                        continue
                    results[key][kind] = _phase(server, reqs[key], seconds, rate)
                    if key == "recloop":
                        _wait_drained(server)
            served = orjson.loads(_http(servers["recloop"].port, "GET", "/healthz")[1])
            metrics = _metrics(servers["recloop"].port)
            rec_rows = _figures("", results["recloop"], servers["recloop"].proc.pid, True)
            rec_rows[0]["model_version_start"] = version
            rec_rows[0]["model_version_end"] = served["loops"]["default"]
            rows += rec_rows
            rows.append(
                figure(
                    BENCH,
                    "server_checkpoints",
                    metrics.get("recloop_checkpoints_total", float("nan")),
                    None,
                    None,
                    joins=metrics.get("recloop_joins_total"),
                    decisions=metrics.get("recloop_decisions_total"),
                    exp_unit_s=SERVER_EXP_UNIT,
                )
            )
            so = results["serve_only"]
            rows += _figures("serve_only_", so, servers["serve_only"].proc.pid, False)
            w2 = results["workers2"]
            rows += _figures("workers2_", w2, servers["workers2"].proc.pid, False)
            yard = results["yardstick"]
            rows += _figures("yardstick_", yard, servers["yardstick"].proc.pid, False)
        finally:
            for server in servers.values():
                server.stop()

    rec = results["recloop"]
    ratio = rec["saturation"].rate / max(yard["saturation"].rate, 1e-9)
    rows.append(figure(BENCH, "ratio_rank_per_s_vs_yardstick", ratio))
    ratio = so["saturation"].rate / max(yard["saturation"].rate, 1e-9)
    rows.append(figure(BENCH, "ratio_serve_only_rank_per_s_vs_yardstick", ratio))
    ratio = w2["saturation"].rate / max(yard["saturation"].rate, 1e-9)
    rows.append(figure(BENCH, "ratio_workers2_rank_per_s_vs_yardstick", ratio))
    p99 = summarize(rec["paced"].latencies_ms)["p99"]
    yard_p99 = summarize(yard["paced"].latencies_ms)["p99"]
    rows.append(figure(BENCH, "ratio_paced_p99_vs_yardstick", p99 / yard_p99))
    print_table(f"web API: POST /v1/rank, {CONNECTIONS} connections, loopback", rows)
    return rows


if __name__ == "__main__":
    cli(main, "web API throughput")
