"""Harnesses that run agents, rankers and whole loops in the simulators and judge them.

They sit above everything they drive (agents, simulators, the loop, the estimators), so
nothing below imports them: only the CLI, the benchmarks and the tests do (a contract
in ``.importlinter`` keeps it so).
"""
