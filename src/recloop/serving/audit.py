"""The audit log of admin actions: every admin request that changes something (a write
under ``admin`` access: settings, models, policies, items, logs, evaluations, keys) leaves
one entry with its time, key name, method, path, answer status and loop.

An ASGI middleware inside the Guard (so the caller's key is known). The entry is written
(from a worker thread: the event loop never waits on the store) before the last byte of
the answer goes out, so a caller that has its answer finds its entry in ``GET
/v1/audit``. A store that fails is logged and counted (``audit_errors_total``), never
turned into an error for a request that succeeded.
Retention: the newest ``audit_keep_entries`` entries are kept (see ``stores/keys.py``).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from urllib.parse import parse_qsl

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recloop.core.stats import LoopStats
from recloop.serving.auth import Authenticator, changes_something
from recloop.settings import DEFAULT_LOOP
from recloop.stores.keys import AuditEntry

log = logging.getLogger(__name__)

LOOP_IN_PATH = re.compile(r"(?:/v1)?/loops/([^/]+)/")
SERVER_WIDE = ("/v1/keys", "/v1/audit", "/v1/users/")
"""Paths of no loop (a user is forgotten in every loop)."""
FORGOTTEN_USER = re.compile(r"(/v1/users/)([^/]+)")


def recorded_path(path: str) -> str:
    """The path as the audit log keeps it: a user's erasure (``/v1/users/{id}``) names the
    user by the first 16 hex digits of the id's SHA-256, not by the id, so the log that
    proves the request was served does not keep the very id it erased (whoever knows the
    id can still find its entry)."""
    found = FORGOTTEN_USER.fullmatch(path)
    if found is None:
        return path[:2000]
    digest = hashlib.sha256(found[2].encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{found[1]}sha256:{digest}"


def loop_of(path: str, query: bytes) -> str | None:
    """The loop a request addresses: in its path, its ``?loop=``, else the default."""
    if path.startswith(SERVER_WIDE):
        return None
    found = LOOP_IN_PATH.match(path)
    if found:
        return found[1]
    if b"loop=" in query:
        for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if key == "loop":
                return value[:200]
    return DEFAULT_LOOP


class AuditTrail:
    """ASGI middleware: records admin writes in the key store's audit log."""

    def __init__(self, app: ASGIApp, auth: Authenticator, stats: LoopStats) -> None:
        self.app = app
        self.auth = auth
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not changes_something(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        status = 500  # an exception before any answer: the server's 500
        written = False

        async def record() -> None:
            nonlocal written
            written = True
            entry = AuditEntry(
                time=time.time(),
                key=self.auth.caller(scope),
                method=scope["method"],
                path=recorded_path(scope["path"]),
                status=status,
                loop=loop_of(scope["path"], scope.get("query_string", b"")),
            )
            with anyio.CancelScope(shield=True):  # a client gone still leaves its entry
                await anyio.to_thread.run_sync(self._write, entry)

        async def send_recorded(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                await record()  # before the answer is complete: the caller can read it
            await send(message)

        try:
            await self.app(scope, receive, send_recorded)
        finally:
            if not written:
                await record()

    def _write(self, entry: AuditEntry) -> None:
        store = self.auth.store
        try:
            if store is None:
                raise RuntimeError("the key store is not open")
            store.audit(entry)
        except Exception as exc:  # the answer is sent: count and log, nothing else
            self.stats.inc("audit_errors_total")
            log.warning("audit entry not written (%s %s): %s", entry.method, entry.path, exc)
