"""The decision routes served as plain ASGI, ahead of FastAPI's routing.

``POST /v1/rank``, ``/v1/events/{id}/reward`` and ``/v1/events/{id}/activate`` (also under
``/v1/loops/{loop}/`` or with ``?loop=``) are most of a decision service's traffic. Going
through Starlette's router, FastAPI's dependency solving and its exception middleware cost
about as much CPU as the decision itself (README, "Measurements behind the code"). Here
they are matched by one regular expression
and answered by the same functions the FastAPI routes call, with the same
problem-details errors; anything else (or any other method) goes on to FastAPI, and the
FastAPI routes keep documenting these in the OpenAPI.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from fastapi.exceptions import RequestValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from recloop.client import Loop
from recloop.core.errors import RecloopError
from recloop.core.stats import LoopStats
from recloop.serving.deps import lookup_loop
from recloop.serving.problems import error_problem, validation_problem
from recloop.serving.routes.decisions import JSON, activate_answer, rank_answer, reward_answer
from recloop.settings import DEFAULT_LOOP

ROUTE = re.compile(
    r"/v1(?:/loops/(?P<loop>[^/]+))?/"
    r"(?:(?P<rank>rank)|events/(?P<event_id>[^/]+)/(?P<op>reward|activate))"
)
_HEADERS = [(b"content-type", JSON.encode())]


def _query_loop(query: bytes) -> str:
    """The ``loop`` query parameter (the last one given, blank kept: as Starlette reads it)."""
    if b"loop=" not in query:
        return DEFAULT_LOOP
    name = DEFAULT_LOOP
    for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if key == "loop":
            name = value
    return name


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


class DecisionFastPath:
    """ASGI middleware: the decision routes answered here, everything else passed on."""

    def __init__(self, app: ASGIApp, loops: dict[str, Loop], stats: LoopStats) -> None:
        self.app = app
        self.loops = loops
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = None
        if scope["type"] == "http" and scope["method"] == "POST":
            match = ROUTE.fullmatch(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        try:
            loop = lookup_loop(self.loops, match["loop"] or _query_loop(scope["query_string"]))
            if match["rank"]:
                body, status = rank_answer(loop, await _read_body(receive)), 200
            elif match["op"] == "reward":
                raw = await _read_body(receive)
                body, status = reward_answer(loop, match["event_id"], raw), 202
            else:
                body, status = activate_answer(loop, match["event_id"]), 202
        except RecloopError as exc:
            await error_problem(exc, path, self.stats)(scope, receive, send)
            return
        except RequestValidationError as exc:
            await validation_problem(exc.errors(), path, self.stats)(scope, receive, send)
            return
        headers = [*_HEADERS, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
