"""``python -m benchmarks.faults [--layout L] [--fault F] [--quick]``: the fault matrix.

Runs every (layout, fault) pair (or the ones picked), prints one table and, as every
benchmark does, one JSON line per figure (per pair: acknowledged, missing, duplicated,
longest stall, requests per second, survived). Exits 1 if any pair lost, duplicated or
answered a 5xx other than a clean 503. Needs root (tmpfs mounts) and, for the cluster
layout, the PostgreSQL, NATS and Redis binaries.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

from benchmarks.common import figure
from benchmarks.faults.faults import BY_NAME, FAULTS
from benchmarks.faults.load import LoadConfig
from benchmarks.faults.matrix import LAYOUTS, Row, run_pair
from benchmarks.faults.table import print_rows

BENCH = "faults"


def figures(row: Row) -> None:
    lay, fault = row.layout, row.fault
    if not row.applies:
        figure(
            BENCH, "survived", math.nan, layout=lay, fault=fault, applies=False, reason=row.reason
        )
        return
    n = row.acknowledged
    figure(BENCH, "acknowledged", n, n=n, layout=lay, fault=fault)
    for name, value in (
        ("missing", row.missing),
        ("duplicated", row.duplicated),
        ("unclean_5xx", row.unclean_5xx),
    ):
        figure(BENCH, name, value, goal=0, n=n, layout=lay, fault=fault)
    figure(BENCH, "longest_stall_s", row.longest_stall_s, n=n, layout=lay, fault=fault)
    figure(
        BENCH,
        "requests_per_s",
        row.requests_per_s,
        n=n,
        layout=lay,
        fault=fault,
        seconds=row.seconds,
    )
    figure(
        BENCH,
        "survived",
        1.0 if row.ok else 0.0,
        goal=1,
        n=n,
        better="higher",
        layout=lay,
        fault=fault,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Inject each fault under load; audit.")
    parser.add_argument("--layout", action="append", choices=sorted(LAYOUTS))
    parser.add_argument("--fault", action="append", choices=sorted(BY_NAME))
    parser.add_argument("--fast", action="store_true", help="only the CI slice's faults")
    parser.add_argument("--quick", action="store_true", help="as --fast (run_all's flag)")
    parser.add_argument(
        "--rate",
        type=float,
        default=LoadConfig.rate,
        help="decisions/s (with their rewards; events beside)",
    )
    parser.add_argument("--seconds", type=float, default=LoadConfig.seconds)
    parser.add_argument("--threads", type=int, default=LoadConfig.threads)
    parser.add_argument("--work", type=Path, help="keep run folders here (default: temp)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)

    layouts = args.layout or sorted(LAYOUTS)
    faults = [BY_NAME[n] for n in args.fault] if args.fault else FAULTS
    if args.fast or args.quick:
        faults = [f for f in faults if f.fast]
    load = LoadConfig(rate=args.rate, seconds=args.seconds, threads=args.threads)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="recloop-faults-") as tmp:
        work = args.work or Path(tmp)
        for layout in layouts:
            for fault in faults:
                print(f"[faults] {layout} / {fault.name} ...", file=sys.stderr, flush=True)
                row = run_pair(layout, fault, load, work)
                rows.append(row)
                figures(row)
    print_rows(rows)
    if args.json:
        args.json.write_text("\n".join(json.dumps(r.to_dict()) for r in rows) + "\n")
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
