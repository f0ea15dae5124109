"""The server's pipeline process: join, learn and evaluate every loop beside the web tier.

Running it in its own process lets ``recloop serve`` use two cores and keeps the
pipeline's CPU bursts (joins, VW learning, checkpoints) from stalling requests on the GIL.
It talks to the serving process only through the loop's stores: the model store (new
versions), and two state keys (evaluations, counters). It exits when its parent dies, and
its file lease is released by the kernel, so a restarted server takes over cleanly.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from recloop.client import Loop
from recloop.core.errors import StoreUnavailableError
from recloop.learning.failures import FailureLog
from recloop.learning.lease import LeaseBusyError, LeaseLostError
from recloop.serving.threads import train_on_all_cores_but_one
from recloop.settings import LoopSettings

log = logging.getLogger(__name__)
TAKE_OVER_SECONDS = 1.0  # how often a standby pipeline tries to take a loop over


def run_pipelines(
    data_dir: str, loops: dict[str, dict[str, Any]], parent_pid: int, log_level: int
) -> None:
    """Child entry point: step every loop's pipeline until the parent goes away."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    train_on_all_cores_but_one()  # before a deep-RL learner imports PyTorch
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    opened: dict[str, Loop] = {}
    waiting = dict(loops)
    next_try = 0.0
    tick = min(LoopSettings(**cfg).tick_seconds for cfg in loops.values())
    quiet = FailureLog(log)
    log.info("pipeline process %s for loops %s", os.getpid(), sorted(loops))
    try:
        while not stop.wait(tick):
            if os.getppid() != parent_pid:
                log.warning("server process %s is gone; pipeline exits", parent_pid)
                break
            if waiting and time.monotonic() >= next_try:
                next_try = time.monotonic() + TAKE_OVER_SECONDS
                for name in list(waiting):
                    loop = _take_over(name, waiting[name], data_dir)
                    if loop is not None:
                        opened[name] = loop
                        del waiting[name]
            for name, lp in list(opened.items()):
                try:
                    lp.step()
                    quiet.recovered(name)
                except LeaseLostError:  # another process may run it now: stand by again
                    log.warning("loop %s: pipeline lease lost; standing by", name)
                    lp.close()
                    del opened[name]
                    waiting[name] = loops[name]
                except Exception:  # the next tick retries from committed offsets
                    lp.stats.inc("pipeline_errors_total")
                    quiet.failed(name)
    finally:
        for lp in opened.values():
            lp.close()


def _take_over(name: str, cfg: dict[str, Any], data_dir: str) -> Loop | None:
    """Open the loop's pipeline if no other process runs it. Otherwise stand by: with a
    shared PostgreSQL store, another server's pipeline may hold it, and this one takes
    over when that server dies."""
    settings = LoopSettings(**{**cfg, "lease_wait_seconds": 0.0})
    try:
        loop = Loop(settings, Path(data_dir), name, role="pipeline")
    except LeaseBusyError:
        return None
    except StoreUnavailableError as exc:  # the database is away: try again in a second
        log.warning("pipeline of loop %s waits for its store: %s", name, exc)
        return None
    log.info("pipeline process %s runs loop %s", os.getpid(), name)
    return loop


def start_pipeline_process(data_dir: Path, loops: dict[str, LoopSettings]) -> BaseProcess:
    ctx = multiprocessing.get_context("spawn")
    process = ctx.Process(
        target=run_pipelines,
        args=(
            str(data_dir),
            {name: cfg.model_dump() for name, cfg in loops.items()},
            os.getpid(),
            logging.getLogger().getEffectiveLevel(),
        ),
        name="recloop-pipeline",
        daemon=True,
    )
    process.start()
    return process


def stop_pipeline_process(process: BaseProcess, timeout: float = 15.0) -> None:
    if process.is_alive():
        process.terminate()
        process.join(timeout)
    if process.is_alive():
        process.kill()
        process.join(timeout)
