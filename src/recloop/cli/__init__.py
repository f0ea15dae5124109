"""The `recloop` command line: ``app`` is the entry point (``recloop = "recloop.cli:app"``;
``python -m recloop.cli`` runs it too).

``main`` holds the app and its top-level commands (serve, pipeline, simulate, export,
report, bench, show-config); the other modules hold one job each: ``agents`` (generate,
train), ``evaluate_agents``, ``offline`` (estimate-offline), ``experiment``, ``stream``
(replay, stream), ``items`` (items, features), ``users``, ``keys`` (keys, audit), and
``checks`` (``RecloopTyper``: a user's mistake is one line and an exit status).
"""

from recloop.cli.main import app

__all__ = ["app"]
