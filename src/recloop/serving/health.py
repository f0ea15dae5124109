"""Liveness and readiness: what an orchestrator (or an operator) needs to trust a server.

``/healthz`` (liveness) fails only when restarting the server is the cure: the pipeline
process has stayed dead past its restarts, or the data dir was deleted or replaced under
the server (``StorageLostError``: it acknowledges nothing more until it is restarted on a
data dir it can trust). ``/readyz`` (readiness) fails whenever the
server should not take traffic: the pipeline is down, a loop's stores do not answer, or
the joiner or learner is further behind the log than ``ready_max_lag``. Both say why.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from recloop.client import Loop
from recloop.core.stats import LoopStats
from recloop.learning.pipeline import READ_KEY
from recloop.serving.supervisor import PipelineSupervisor

UNHEALTHY_AFTER_SECONDS = 30.0
"""A pipeline down this long (its restarts failing) makes the server unhealthy."""


def pipeline_status(supervisor: PipelineSupervisor | None, mode: str) -> dict[str, Any]:
    if supervisor is None:
        return {"mode": mode, "alive": True}
    return supervisor.status()


def storage_lost(stats: LoopStats) -> bool:
    """Whether a request has found the data dir's files deleted or replaced: the server
    refuses every write from then on (503 ``storage-lost``), so only a restart helps."""
    return stats.get("rejected_total:storage-lost") > 0


def live(pipeline: Mapping[str, Any]) -> bool:
    down = pipeline.get("down_seconds")
    return down is None or down < UNHEALTHY_AFTER_SECONDS


def loop_readiness(loop: Loop, max_lag: int) -> dict[str, Any]:
    """One loop's stores and lags, read from the stores themselves (so they are true
    across processes): records logged but not yet joined, examples joined but not yet in
    a model version. Blocking: call it from a worker thread."""
    try:
        log_end = loop.log.end_offset()
        joined_to = loop.joined.offset(READ_KEY)
        joined_end = loop.joined.end_seq()
        newest = loop.models.newest()
    except Exception as exc:  # any store failure: not ready, and why
        return {"ready": False, "reason": f"store unavailable: {type(exc).__name__}: {exc}"}
    learned_to = int(newest.meta.get("learner_offset", 0)) if newest is not None else 0
    join_lag = max(log_end - joined_to, 0)
    learn_lag = max(joined_end - learned_to, 0)
    out: dict[str, Any] = {
        "ready": True,
        "model_version": loop.model_version,
        "join_lag_records": join_lag,
        "learner_lag_examples": learn_lag,
    }
    if loop.settings_problem is not None:  # running on other settings than it was told
        out["ready"] = False
        out["reason"] = loop.settings_problem
    elif join_lag > max_lag or learn_lag > max_lag:
        out["ready"] = False
        out["reason"] = f"pipeline behind the log by more than ready_max_lag ({max_lag})"
    return out
