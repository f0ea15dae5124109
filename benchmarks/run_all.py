"""Run every benchmark: ``python -m benchmarks.run_all [--only NAME] [--quick]``.

Each benchmark runs in its own interpreter (so memory figures and warm caches are its own,
and one failing does not stop the others); its output streams through, its JSON figure lines
are collected, and a summary table of every figure is printed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import JSON_PREFIX, print_table

BENCHMARKS = [
    "rank_inprocess",
    "learner_throughput",
    "reward_to_model",
    "web_api",
    "ope_speed",
    "ope_accuracy",
    "stream_embedded",
    "stream_flink",
    "agents_biased_logging",
    "agents_compare",
    "agents_speed",
    "drn_ablation",
    "fusion_ddpg",
    "fusion_loop",
    "gc_pause",
    "rate_limit",
    "vw_robustness",
]
ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 240


def run_one(name: str, quick: bool) -> tuple[int, list[dict[str, Any]], float]:
    """Run ``benchmarks.<name>`` in a subprocess; return (exit code, figures, seconds)."""
    cmd = [sys.executable, "-m", f"benchmarks.{name}", *(["--quick"] if quick else [])]
    rows: list[dict[str, Any]] = []
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )

    def overtime() -> None:
        print(f"[run_all] {name} exceeded {TIMEOUT_S}s; stopping it", file=sys.stderr)
        proc.terminate()

    watchdog = threading.Timer(TIMEOUT_S, overtime)
    watchdog.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            if line.startswith(JSON_PREFIX):
                with contextlib.suppress(ValueError):
                    rows.append(json.loads(line))
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.terminate()
        try:
            code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    return code, rows, time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the recloop benchmarks.")
    parser.add_argument("--only", choices=BENCHMARKS, help="run one benchmark")
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke test)")
    parser.add_argument("--output", type=Path, help="also write every figure here (JSON lines)")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a figure misses its goal")
    args = parser.parse_args(argv)

    names = [args.only] if args.only else BENCHMARKS
    all_rows: list[dict[str, Any]] = []
    failed: list[str] = []
    timings: list[str] = []
    for name in names:
        print(f"\n=== {name}{' (quick)' if args.quick else ''} ===", flush=True)
        code, rows, seconds = run_one(name, args.quick)
        timings.append(f"{name} {seconds:.0f}s")
        all_rows += rows
        if code != 0:
            failed.append(f"{name} (exit {code})")

    print()
    print_table("recloop benchmarks: every figure", all_rows)
    print("time: " + ", ".join(timings))
    missed = [f"{r['bench']}.{r['figure']}" for r in all_rows if r.get("met") is False]
    if missed:
        print("goals missed: " + ", ".join(missed))
    if failed:
        print("FAILED: " + ", ".join(failed), file=sys.stderr)
    if args.output:
        args.output.write_text("".join(json.dumps(r) + "\n" for r in all_rows))
    if failed or (args.strict and missed):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
