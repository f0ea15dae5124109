"""The fault matrix: load the system, inject each fault, count every acknowledged record.

``load`` is a bounded loopback client that retries as a real one would; ``audit`` counts
from the backends directly; ``deploy`` (the embedded default) and ``cluster`` (the
Procfile's processes, on the private servers of ``services``) are the layouts, whose
processes ``processes`` finds by what they do; ``faults`` injects and recovers;
``matrix`` turns one (layout, fault) run into a row; ``table`` prints the rows.
``python -m benchmarks.faults`` runs them all.
"""
