"""What a loop can serve, learn and evaluate, by kind: ``models`` (stored model versions:
VW, DRN, saved agents) and ``policies`` (the kinds named in settings, candidates and
``--policy``). The one place the loop, the pipeline, the stream and the CLI dispatch on a
kind; above ``policies`` and ``agents``, below everything that uses them."""
