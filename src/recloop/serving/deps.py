"""FastAPI dependencies: the loop a request addresses, and the API key check.

All ``async``: they do no I/O, and a sync dependency costs a thread-pool hop per request.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request

from recloop.client import Loop
from recloop.core.errors import UnauthorizedError, UnknownLoopError
from recloop.settings import DEFAULT_LOOP, Settings


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_loop(request: Request, loop: str = DEFAULT_LOOP) -> Loop:
    """`loop` comes from the path (/v1/loops/{loop}/...) or the query (?loop=), else default."""
    loops: dict[str, Loop] = request.app.state.loops
    try:
        return loops[loop]
    except KeyError:
        raise UnknownLoopError(f"no loop named {loop!r}; configured: {sorted(loops)}") from None


async def require_api_key(
    request: Request,
    x_api_key: Annotated[
        str | None, Header(description="Needed when RECLOOP_API_KEY is set.")
    ] = None,
) -> None:
    settings: Settings = request.app.state.settings
    if settings.api_key is None:
        return
    expected = settings.api_key.get_secret_value()
    if x_api_key is None or not hmac.compare_digest(x_api_key, expected):
        raise UnauthorizedError("missing or wrong X-API-Key header")


LoopDep = Annotated[Loop, Depends(get_loop)]
