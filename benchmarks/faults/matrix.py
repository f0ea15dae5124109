"""One (layout, fault) run: a fresh deployment, the load, the fault, the audit: one row.

Every run gets a deployment of its own (data dir, database, stream names), so a fault's
leftovers never blur the next run's counts.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks.faults.audit import audit, wait_settled
from benchmarks.faults.cluster import FEATURES as CLUSTER_FEATURES
from benchmarks.faults.cluster import Cluster, shared_services
from benchmarks.faults.deploy import Deployment, Embedded, wait_ready
from benchmarks.faults.faults import Context, Fault, make_read_only, tmpfs
from benchmarks.faults.load import Load, LoadConfig

WARMUP_SECONDS = 3.0
"""Load before the fault: some windows joined, some open, a model version stored."""
SETTLE_SECONDS = 40.0
LAYOUT_FEATURES = {
    "embedded": frozenset({"workers", "pipeline", "data-dir"}),
    "cluster": CLUSTER_FEATURES,
}
NOT_APPLICABLE = {
    "stream-runner": "the stream runner is a thread of the server (kill9-server kills it)",
    "postgres": "no PostgreSQL in this layout (SQLite under the data dir)",
    "nats": "no NATS in this layout (the stream log is SQLite)",
    "redis": "no Redis in this layout (recommendations in SQLite)",
    "data-dir": "records live in PostgreSQL/NATS/Redis, not under a data dir",
    "workers": "no --workers in this layout (two servers instead: kill9-server)",
    "pipeline": "no pipeline process in this layout",
}

Factory = Callable[[Path, Path, str, ExitStack], Deployment]
"""(data dir, log file, setup, cleanups) -> a deployment not yet started."""


def embedded(data_dir: Path, log: Path, setup: str, stack: ExitStack) -> Deployment:
    return Embedded(data_dir, log, workers=2 if setup == "workers" else 1)


def cluster(data_dir: Path, log: Path, setup: str, stack: ExitStack) -> Deployment:
    return Cluster(data_dir.parent, shared_services())


LAYOUTS: dict[str, Factory] = {"embedded": embedded, "cluster": cluster}


@dataclass
class Row:
    layout: str
    fault: str
    applies: bool = True
    reason: str = ""
    requests_per_s: float = 0.0
    seconds: float = 0.0
    acknowledged: int = 0
    found: int = 0
    missing: int = 0
    duplicated: int = 0
    phantom: int = 0
    unknown: int = 0
    joined_ok: bool = False
    learned_ok: bool = False
    stream_ok: bool | None = None
    statuses: dict[str, int] = field(default_factory=dict)
    unclean_5xx: int = 0
    longest_stall_s: float = 0.0
    ready_after_s: float | None = None
    note: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.applies or (
            self.missing == self.duplicated == self.phantom == self.unclean_5xx == 0
            and self.joined_ok
            and self.learned_ok
            and self.stream_ok is not False
            and self.acknowledged > 0
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def run_pair(
    layout: str, fault: Fault, load: LoadConfig, work: Path, features: frozenset[str] | None = None
) -> Row:
    features = LAYOUT_FEATURES.get(layout, frozenset()) if features is None else features
    lacking = sorted(fault.needs - features)
    if lacking:
        return Row(layout, fault.name, applies=False, reason=NOT_APPLICABLE[lacking[0]])
    run_dir = work / f"{layout}-{fault.name}-{uuid.uuid4().hex[:6]}"
    run_dir.mkdir(parents=True)
    ctx = Context(run_dir)
    with ExitStack() as stack:
        data_dir = run_dir / "data"
        if fault.setup in ("tmpfs", "readonly"):
            mount = stack.enter_context(tmpfs(run_dir / "disk", "40m"))
            data_dir = mount / "data"
            if fault.setup == "readonly":
                make_read_only(mount)
        dep = LAYOUTS[layout](data_dir, run_dir / "server.log", fault.setup, stack)
        stack.callback(dep.close)
        try:
            dep.start(wait=fault.setup != "readonly")
        except Exception as exc:  # a layout that does not come up: a row that says so
            why = f"the deployment did not start: {type(exc).__name__}: {str(exc)[:300]}"
            return Row(layout, fault.name, note=why, problems=[why])
        cfg = replace(load, seconds=max(load.seconds, WARMUP_SECONDS + fault.load_seconds + 3))
        running = Load(dep.urls, cfg, prefix=fault.name).start()
        try:
            time.sleep(WARMUP_SECONDS)
            ctx.injected_at = time.monotonic()
            note = fault.inject(dep, ctx)
        except Exception as exc:  # the fault itself failed: say so in the row
            note = f"injection failed: {type(exc).__name__}: {exc}"
        ready_after = wait_ready(dep, 30.0)  # since the recovery (the load goes on)
        result = running.join()
        backend = dep.backend()
        wait_settled(backend, SETTLE_SECONDS, dep.stream_done)
        scope = None
        if ctx.scope_from is not None:
            since = ctx.scope_from
            scope = lambda key: result.first_sent.get(key, 0.0) >= since  # noqa: E731
        counts = audit(backend, result.sent, dep.stream_done, scope)
        tracebacks = dep.log_tail(200_000).count("Traceback")
        if tracebacks:
            note += f"; {tracebacks} traceback(s) logged"
    answered = sum(1 for a in result.attempts if 200 <= a.status < 300)
    return Row(
        layout,
        fault.name,
        requests_per_s=round(answered / max(result.duration, 1e-9), 1),
        seconds=round(result.duration, 1),
        acknowledged=counts.acknowledged,
        found=counts.found,
        missing=counts.missing,
        duplicated=counts.duplicated,
        phantom=counts.phantom,
        unknown=counts.unknown,
        joined_ok=counts.joined_ok,
        learned_ok=counts.learned_ok,
        stream_ok=counts.stream_ok,
        statuses=dict(sorted(result.statuses().items())),
        unclean_5xx=len(result.unclean_5xx()),
        longest_stall_s=round(result.longest_stall(), 2),
        ready_after_s=None if ready_after is None else round(ready_after, 1),
        note=note,
        problems=counts.problems
        + [f"5xx: {a.status} {a.detail}" for a in result.unclean_5xx()[:3]],
    )
