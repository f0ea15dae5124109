"""Request helpers: the loop a request addresses.

``loop`` comes from the path (/v1/loops/{loop}/...) or the query (?loop=), else the
default loop. Everything here is ``async`` or plain: a sync FastAPI dependency costs a
thread-pool hop per request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from recloop.client import Loop
from recloop.core.errors import UnknownLoopError
from recloop.settings import DEFAULT_LOOP


def loop_for(request: Request, name: str) -> Loop:
    return lookup_loop(request.app.state.loops, name)


def lookup_loop(loops: dict[str, Loop], name: str) -> Loop:
    try:
        return loops[name]
    except KeyError:
        raise UnknownLoopError(f"no loop named {name!r}; configured: {sorted(loops)}") from None


async def get_loop(request: Request, loop: str = DEFAULT_LOOP) -> Loop:
    return loop_for(request, loop)


LoopDep = Annotated[Loop, Depends(get_loop)]
