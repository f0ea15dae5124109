"""recloop benchmarks: ``python -m benchmarks.run_all [--only NAME] [--quick]``.

Each module has ``main(quick: bool = False) -> list[dict]``, prints a human-readable table and
one JSON line per figure (``{"bench", "figure", "value", "goal", "n", ...}``), and measures a
simple yardstick in the same run so that ratios, not raw machine-dependent numbers, can be
compared across machines.
"""
