"""Who may call what: API keys with scopes, checked by the Guard before any routing.

What each path needs (``access``):

* ``rank`` — the decision and stream routes: ``/v1`` rank, reward, activate, behaviour
  events, recommendations; Personalizer rank, reward, activate (also multi-slot);
* ``admin`` — every other ``/v1`` and Personalizer route (models, policies,
  configurations, items, logs, evaluations, dead letters, dashboard data, keys, audit);
* ``metrics`` — ``/metrics`` (an admin key, or a key of scope ``metrics``);
* ``any`` — ``/docs``, ``/redoc``, ``/openapi.json``: any valid key;
* ``open`` — ``/healthz``, ``/readyz`` (orchestrators probe them without keys: they say
  only ok or not and coarse reasons, the details go to admin keys), the ``/dashboard``
  page itself (static: its data comes from ``/v1/dashboard`` with the key typed in).

No key configured at all (no ``Settings.api_key``, no key ever stored) leaves every route
open, as before keys existed. Once a key has been stored, keys are required, even after
every stored key is revoked: revoking the last key must lock the server, not open it.
``Settings.api_key`` is one more key, named ``settings``, with every scope.

Keys are sent as ``X-API-Key`` (``Ocp-Apim-Subscription-Key`` on Personalizer paths;
``/metrics`` also takes ``Authorization: Bearer``). The check on the hot path is one
SHA-256 of the presented key and one dict lookup on an in-memory table; the table is
reloaded from the shared store every ``REFRESH_SECONDS`` by a thread, so a key added or
revoked anywhere (another process, ``recloop keys``) counts here within about a second,
and a store that is away never stalls a request (the last table read keeps serving).
Looking the digest up in a dict is not a constant-time comparison, and need not be: its
timing could tell at most how the digest of the caller's own guess compares with stored
digests, which says nothing about any key (SHA-256 is not invertible).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, Literal

from starlette.types import Scope

from recloop.core.errors import ForbiddenError, RecloopError, UnauthorizedError
from recloop.core.stats import LoopStats
from recloop.serving.fast_path import ROUTE as DECISION_ROUTE
from recloop.serving.routes.personalizer_routing import is_personalizer_path
from recloop.settings import Settings
from recloop.stores.keys import GRANTS, SCOPES, SETTINGS_KEY_NAME, KeyStore, open_key_store

log = logging.getLogger(__name__)

Access = Literal["open", "any", "rank", "admin", "metrics"]
REFRESH_SECONDS = 0.5
"""How often each server rereads the keys: a revocation counts within about this long."""
STATE_NAME = "recloop_key"
STATE_SCOPES = "recloop_scopes"
"""Where an authenticated caller's key name and scopes go in ``scope["state"]`` (read by
the audit log, the rate limiter, and ``request.state``)."""

PERSONALIZER_RANK = re.compile(
    r"(?:/loops/[^/]+)?/personalizer(?:/v[^/]+)?(?:/multislot)?"
    r"/(?:rank|events/[^/]+/(?:reward|activate))"
)
STREAM = re.compile(r"/v1/(?:events|users/[^/]+/recommendations)")
ANY_KEY = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
Table = dict[bytes, tuple[str, frozenset[str]]]


def access(method: str, path: str) -> Access:
    """What a request needs (see the module's docstring)."""
    if is_personalizer_path(path):
        return "rank" if method == "POST" and PERSONALIZER_RANK.fullmatch(path) else "admin"
    if path.startswith("/v1"):
        if method == "POST" and (DECISION_ROUTE.fullmatch(path) or path == "/v1/events"):
            return "rank"
        if method in ("GET", "HEAD") and STREAM.fullmatch(path):
            return "rank"
        return "admin"
    if path == "/metrics":
        return "metrics"
    if path in ANY_KEY:
        return "any"
    return "open"


def changes_something(method: str, path: str) -> bool:
    """An admin request the audit log records: a write under admin access."""
    return method in ("POST", "PUT", "PATCH", "DELETE") and access(method, path) == "admin"


class Authenticator:
    """The keys this server accepts, kept fresh from the shared key store."""

    def __init__(
        self,
        settings: Settings,
        stats: LoopStats,
        opener: Callable[[Settings], KeyStore] = open_key_store,
    ) -> None:
        self._settings = settings
        self._stats = stats
        self._opener = opener
        self._fixed: Table = {}
        if settings.api_key is not None:
            raw = settings.api_key.get_secret_value().encode()
            self._fixed[hashlib.sha256(raw).digest()] = (SETTINGS_KEY_NAME, frozenset(SCOPES))
        # (table, keys required): replaced whole, so a request reads one consistent view.
        # Until the store is read, only the settings key counts, and keys are required
        # if it is set: a store that cannot be read must not open the server.
        self._view: tuple[Table, bool] = (dict(self._fixed), bool(self._fixed))
        self.store: KeyStore | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False
        self._refreshing = threading.Lock()  # the thread and the keys routes both refresh

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Open the store, read the keys once (before the first request), then keep them
        fresh from a thread."""
        self.refresh()
        if self.store is None:  # the store is away: closed to all but the settings key
            self._view = (dict(self._fixed), True)
        self._thread = threading.Thread(target=self._run, name="recloop-keys", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._refreshing:
            self._close_store()

    def _close_store(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    def _run(self) -> None:
        while not self._stop.wait(REFRESH_SECONDS):
            self.refresh()

    def refresh(self) -> None:
        """Reread the keys; on failure keep the last table (counted, logged once)."""
        with self._refreshing:
            self._refresh()

    def _refresh(self) -> None:
        try:
            if self.store is None:
                self.store = self._opener(self._settings)
            stored, ever = self.store.active()
        except Exception as exc:  # any failure: keep serving on what we know
            self._stats.inc("key_store_errors_total")
            if not self._failing:
                log.warning("API keys could not be read (keeping the last ones): %s", exc)
            self._failing = True
            return
        if self._failing:
            log.warning("API keys can be read again")
        self._failing = False
        table: Table = {d: (name, GRANTS[scope]) for d, (name, scope) in stored.items()}
        table.update(self._fixed)
        self._view = (table, ever or bool(self._fixed))

    # -- per request ----------------------------------------------------------------------
    @property
    def required(self) -> bool:
        """Whether keys are required at all (else every route is open)."""
        return self._view[1]

    def check(self, scope: Scope, headers: Mapping[bytes, bytes]) -> RecloopError | None:
        """None when the request may go on (the caller's key, if any, is then in
        ``scope["state"]``); else the error to answer: 401 without a valid key, 403 with
        a key lacking the scope."""
        table, required = self._view
        if not required:
            return None
        path: str = scope["path"]
        need = access(scope["method"], path)
        personalizer = is_personalizer_path(path)
        header = b"ocp-apim-subscription-key" if personalizer else b"x-api-key"
        raw = headers.get(header)
        if raw is None and need == "metrics":
            bearer = headers.get(b"authorization", b"")
            if bearer[:7].lower() == b"bearer ":
                raw = bearer[7:].strip()
        who = table.get(hashlib.sha256(raw).digest()) if raw else None
        if who is not None:
            state = scope.setdefault("state", {})
            state[STATE_NAME], state[STATE_SCOPES] = who
        if need == "open":
            return None
        if who is None:
            name = "Ocp-Apim-Subscription-Key" if personalizer else "X-API-Key"
            return UnauthorizedError(f"missing or wrong {name} header")
        if need == "any" or need in who[1]:
            return None
        return ForbiddenError(f"the key {who[0]!r} lacks the {need!r} scope for {path}")

    def is_admin(self, scope: Scope) -> bool:
        """Whether the caller may see details (an admin key, or no keys configured)."""
        if not self.required:
            return True
        scopes: Any = scope.get("state", {}).get(STATE_SCOPES, ())
        return "admin" in scopes

    def caller(self, scope: Scope) -> str:
        """The caller's key name for the audit log (``anonymous`` when keys are off)."""
        name: Any = scope.get("state", {}).get(STATE_NAME)
        return str(name) if name is not None else "anonymous"


def public_health(body: Mapping[str, Any]) -> dict[str, Any]:
    """``/healthz`` for a caller without an admin key: the status and, when unhealthy, a
    coarse reason; no PIDs, model versions or exit codes."""
    out: dict[str, Any] = {"status": body["status"]}
    if body["status"] == "unhealthy":
        out["reason"] = "storage lost" if body.get("storage") == "lost" else "pipeline down"
    return out


def public_readiness(body: Mapping[str, Any]) -> dict[str, Any]:
    """``/readyz`` for a caller without an admin key: the status and coarse reasons; no
    lags, hosts, paths or store errors."""
    out: dict[str, Any] = {"status": body["status"]}
    reasons: set[str] = set()
    if not body.get("pipeline", {}).get("alive", True):
        reasons.add("pipeline down")
    for loop in body.get("loops", {}).values():
        reason = str(loop.get("reason", ""))
        if loop.get("ready", True):
            continue
        if reason.startswith("store unavailable"):
            reasons.add("store unavailable")
        elif "ready_max_lag" in reason:
            reasons.add("pipeline behind")
        else:
            reasons.add("not ready")
    if reasons:
        out["reasons"] = sorted(reasons)
    return out
