"""API keys and the audit log over HTTP (admin scope): keys are made and revoked without
shell access or a restart; the raw key is in the answer to its creation and nowhere else.

Blocking store calls: the handlers are plain ``def`` (FastAPI runs them on its thread
pool), so a slow store never holds the event loop.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from recloop.core.errors import StoreUnavailableError
from recloop.serving.auth import Authenticator
from recloop.stores.keys import (
    NAME,
    SETTINGS_KEY_NAME,
    AuditEntry,
    KeyInfo,
    KeyStore,
    Scope,
    check_name,
    digest,
    new_key,
)

router = APIRouter(tags=["keys"])


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        pattern=NAME.pattern,
        description="Unique among active keys; letters, digits, '.', '_', '-'.",
        json_schema_extra={"not": {"const": SETTINGS_KEY_NAME}},
    )
    scope: Scope = Field(
        description="rank: decisions and the stream; admin: everything; metrics: /metrics."
    )


class KeyOut(BaseModel):
    name: str
    scope: Scope
    created: float
    revoked: float | None = None


class NewKeyOut(KeyOut):
    key: str = Field(description="The key itself: shown this once, stored only hashed.")


class AuditOut(BaseModel):
    seq: int
    time: float
    key: str
    method: str
    path: str
    status: int
    loop: str | None


def _auth(request: Request) -> Authenticator:
    auth: Authenticator = request.app.state.auth
    return auth


def _store(request: Request) -> KeyStore:
    store = _auth(request).store
    if store is None:
        raise StoreUnavailableError("the key store could not be opened", "no-connection")
    return store


def _out(info: KeyInfo) -> KeyOut:
    return KeyOut(name=info.name, scope=info.scope, created=info.created, revoked=info.revoked)


@router.post(
    "/keys",
    status_code=201,
    response_model=NewKeyOut,
    summary="Make an API key (the answer holds the key, shown once)",
    responses={409: {"description": "An active key has that name"}},
)
def add_key(request: Request, body: KeyRequest) -> NewKeyOut:
    raw = new_key()
    info = _store(request).add(check_name(body.name), body.scope, digest(raw), time.time())
    _auth(request).refresh()  # this server knows it at once; the others within a second
    return NewKeyOut(**_out(info).model_dump(), key=raw)


@router.get("/keys", response_model=list[KeyOut], summary="API keys (never the keys themselves)")
def list_keys(request: Request) -> list[KeyOut]:
    return [_out(k) for k in _store(request).all_keys()]


@router.delete(
    "/keys/{name}",
    status_code=204,
    summary="Revoke an API key (every server refuses it within about a second)",
    responses={404: {"description": "No active key of that name"}},
)
def revoke_key(request: Request, name: str) -> Response:
    _store(request).revoke(name, time.time())
    _auth(request).refresh()
    return Response(status_code=204)


@router.get(
    "/audit",
    response_model=list[AuditOut],
    summary="The audit log of admin actions, newest first (page with ?before=seq)",
)
def audit_log(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> list[AuditOut]:
    return [_audit_out(e) for e in _store(request).audit_entries(limit, before)]


def _audit_out(e: AuditEntry) -> AuditOut:
    return AuditOut(
        seq=e.seq,
        time=e.time,
        key=e.key,
        method=e.method,
        path=e.path,
        status=e.status,
        loop=e.loop,
    )
