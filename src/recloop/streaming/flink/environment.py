"""PyFlink, imported late, and the Flink configuration the job runs under.

PyFlink is an optional extra (``apache-flink``) and untyped: nothing here imports it until
it is used, so that this package imports without it and ``have_pyflink`` can tell.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any


def have_pyflink() -> bool:
    try:
        importlib.import_module("pyflink.datastream")
    except ImportError:
        return False
    return True


def pf(module: str) -> Any:
    """A pyflink module (imported late: it is an optional extra, and untyped)."""
    return importlib.import_module(f"pyflink.{module}")


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest complete retained checkpoint (``<job-id>/chk-N`` with ``_metadata``)."""
    found = [p.parent for p in Path(checkpoint_dir).glob("*/chk-*/_metadata")]
    return max(found, key=lambda p: p.joinpath("_metadata").stat().st_mtime, default=None)


def flink_config(
    *,
    checkpoint_dir: Path | None,
    restore_from: Path | None,
    checkpoint_interval_ms: int = 10_000,
    local: bool = True,
) -> Any:
    """Thread mode, checkpoints kept after cancel (and a kill), and the restore path; a
    local job also runs its Python with this interpreter and its packages."""
    cfg = pf("common").Configuration()
    cfg.set_string("python.execution-mode", "thread")
    if local:
        cfg.set_string("python.executable", sys.executable)
        cfg.set_string("python.client.executable", sys.executable)
        # the embedded interpreter reads no .pth files: give it this interpreter's packages
        cfg.set_string("python.pythonpath", os.pathsep.join(p for p in sys.path if p))
    cfg.set_string("pipeline.object-reuse", "true")  # records are never mutated downstream
    cfg.set_string("restart-strategy.type", "fixed-delay")
    cfg.set_string("restart-strategy.fixed-delay.attempts", "3")
    cfg.set_string("restart-strategy.fixed-delay.delay", "1 s")
    if checkpoint_dir is not None:
        cfg.set_string("execution.checkpointing.interval", f"{checkpoint_interval_ms} ms")
        cfg.set_string("execution.checkpointing.dir", Path(checkpoint_dir).resolve().as_uri())
        cfg.set_string(
            "execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION"
        )
        cfg.set_string("execution.checkpointing.num-retained", "3")
    if restore_from is not None:
        path = Path(restore_from)
        if not (path / "_metadata").exists():
            found = latest_checkpoint(path)
            if found is None:
                raise FileNotFoundError(f"no retained checkpoint under {path}")
            path = found
        cfg.set_string("execution.state-recovery.path", path.resolve().as_uri())
    return cfg
