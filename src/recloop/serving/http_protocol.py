"""uvicorn's HTTP protocol with a deadline on reading each request.

uvicorn times out idle keep-alive connections, but not a connection that has sent part of
a request: a client that sends half its headers (or half its body) and waits holds the
connection, its buffers and a place under ``limit_concurrency`` for ever. A few hundred
such connections starve a server. Here every request, from its first byte (or from the
connection's opening, for one that sends nothing), must arrive whole within
``read_timeout`` seconds, or it is answered 408 and the connection closed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

DEFAULT_READ_TIMEOUT = 10.0


def _timeout_response() -> bytes:
    body = orjson.dumps(
        {
            "type": "https://recloop.dev/problems/request-timeout",
            "title": "Request timeout",
            "status": 408,
            "detail": "the request did not arrive whole in time",
            "instance": None,
        }
    )
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/problem+json\r\n"
        f"connection: close\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


_TIMEOUT_RESPONSE = _timeout_response()


class DeadlineHttpProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` plus the read deadline; the deadline comes from the uvicorn
    Config's ``read_timeout`` attribute (set by ``recloop serve``)."""

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._read_timeout = float(getattr(config, "read_timeout", DEFAULT_READ_TIMEOUT))
        self._read_deadline: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._read_deadline = self.loop.call_later(self._read_timeout, self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or not cycle.response_started:
            self.transport.write(_TIMEOUT_RESPONSE)
        log.info("closed a connection whose request did not arrive within %ss", self._read_timeout)
        self.transport.close()
