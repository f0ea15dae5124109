"""A full garbage collection's pause in a serving process, before and after the freeze
``recloop serve`` does once its startup is done (``serving/app.py``).

Python's full collections walk every tracked object; a server's are mostly its libraries'
(FastAPI, NumPy, VW, PyTorch when a DRN loop is configured) and they never become garbage.
Prints the median of five full collections either way, for a VW loop and a DRN loop.

    python -m benchmarks.gc_pause [--quick: the same, it takes seconds]
"""

from __future__ import annotations

import asyncio
import gc
import tempfile
import time
from typing import Any

from benchmarks.common import cli, figure, print_table

BENCH = "gc_pause"


def _full_collection_ms() -> float:
    times = []
    for _ in range(5):
        start = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)[2]


async def _measure(learner: str) -> list[dict[str, Any]]:
    from recloop.serving import create_app
    from recloop.settings import load_settings

    with tempfile.TemporaryDirectory(prefix="recloop-bench-gc-") as tmp:
        settings = load_settings(data_dir=tmp, pipeline="thread", learner=learner)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            frozen = gc.get_freeze_count()
            gc.unfreeze()
            objects = len(gc.get_objects())
            loose = _full_collection_ms()
            gc.freeze()
            held = _full_collection_ms()
    return [
        figure(BENCH, f"{learner}_full_collection_ms", loose, None, objects),
        figure(BENCH, f"{learner}_full_collection_frozen_ms", held, None, frozen),
    ]


def main(quick: bool = False) -> list[dict[str, Any]]:
    rows = asyncio.run(_measure("vw"))
    rows += asyncio.run(_measure("drn"))
    print_table("a full garbage collection in a serving process", rows)
    return rows


if __name__ == "__main__":
    cli(main, "a full garbage collection's pause, before and after the startup freeze")
