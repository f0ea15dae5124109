"""How ``recloop serve`` runs uvicorn: the request read deadline, a connection limit and
the keep-alive timeout from the settings, for one process or several workers."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from recloop.serving.http_protocol import DeadlineHttpProtocol
from recloop.settings import Settings


def server_config(app: FastAPI | str, settings: Settings, log_level: str) -> uvicorn.Config:
    """``app``: the app itself, or an import string of a factory (several workers)."""
    config = uvicorn.Config(
        app,
        factory=isinstance(app, str),
        host=settings.host,
        port=settings.port,
        workers=settings.workers if isinstance(app, str) else None,
        log_level=log_level,
        access_log=False,
        http=DeadlineHttpProtocol,
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=int(settings.keep_alive_seconds),
    )
    config.read_timeout = settings.request_read_timeout_seconds  # type: ignore[attr-defined]
    return config


def run(config: uvicorn.Config) -> None:
    """As ``uvicorn.run`` does with a ready Config (it builds its own from keywords, which
    cannot carry the read deadline to the protocol)."""
    if config.workers > 1:
        sock = config.bind_socket()
        Multiprocess(config, sockets=[sock]).run()
        return
    uvicorn.Server(config).run()
