"""create_app(settings): loops, routers, problem-details errors, body limit, metrics."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recloop import __version__
from recloop.client import Loop, Role
from recloop.core.clock import Clock
from recloop.core.errors import (
    MalformedJSONError,
    PayloadTooLargeError,
    RecloopError,
)
from recloop.core.stats import LoopStats
from recloop.serving import health
from recloop.serving.audit import AuditTrail
from recloop.serving.auth import Authenticator, public_health, public_readiness
from recloop.serving.fast_path import DecisionFastPath
from recloop.serving.metrics import LoopCollector
from recloop.serving.openapi import openapi_builder
from recloop.serving.pipeline_process import start_pipeline_process, stop_pipeline_process
from recloop.serving.problems import count_rejection, error_problem, problem, validation_problem
from recloop.serving.rate_limit import (
    Limiter,
    client_key,
    limiter_from_settings,
    rate_limited_response,
)
from recloop.serving.routes import (
    dashboard,
    decisions,
    items,
    keys,
    models,
    personalizer,
    personalizer_admin,
    personalizer_evaluations,
    personalizer_multislot,
    personalizer_routing,
    policies,
)
from recloop.serving.routes import stream as stream_routes
from recloop.serving.routes import users as users_routes
from recloop.serving.supervisor import PipelineSupervisor
from recloop.settings import Settings, load_settings
from recloop.streaming.service import Stream

log = logging.getLogger(__name__)


_HTTP_KINDS = {404: "not-found", 405: "method-not-allowed", 400: "bad-request"}
_STATUSES = {int(s) for s in HTTPStatus}


class Guard:
    """Pure ASGI checks before any routing: API key (401, or 403 for a key without the
    route's scope: ``serving/auth.py``), rate limit per key (429: ``serving/rate_limit.py``,
    after the key check so a bucket belongs to an authenticated key, not to whatever a
    caller sends) and body size limit (413).

    Done here rather than as FastAPI dependencies: they run on every request, and the
    dependency machinery costs more than the checks themselves.
    """

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        stats: LoopStats,
        auth: Authenticator,
        limiter: Limiter | None,
    ) -> None:
        self.app = app
        self.max_bytes = settings.max_body_bytes
        self.auth = auth
        self.limiter = limiter
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        refused = self.auth.check(scope, headers)
        if refused is not None:
            await self._reject(scope, receive, send, refused)
            return
        if self.limiter is not None:
            limited_answer = await rate_limited_response(
                self.limiter, client_key(scope), scope["path"], self.stats
            )
            if limited_answer is not None:
                await limited_answer(scope, receive, send)
                return
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            await self._reject(
                scope,
                receive,
                send,
                PayloadTooLargeError(f"request body exceeds the limit of {self.max_bytes} bytes"),
            )
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise PayloadTooLargeError(
                        f"request body exceeds the limit of {self.max_bytes} bytes"
                    )
            return message

        await self.app(scope, limited, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, exc: RecloopError) -> None:
        self.stats.inc(f"rejected_total:{exc.kind}")
        path = scope.get("path", "")
        response = (
            personalizer_routing.from_recloop_error(exc)
            if personalizer_routing.is_personalizer_path(path)
            else problem(exc.status, exc.kind, exc.title, str(exc), path)
        )
        await response(scope, receive, send)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(app: FastAPI, scope: Scope) -> str:
    """A 405's ``Allow``: every method some route of the path takes. Starlette's names only
    those of the first route it matched (``GET /v1/items`` and ``POST /v1/items`` are two
    routes: a PUT was told ``Allow: GET``). Asked of the router itself, method by method,
    since FastAPI nests included routers."""
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**scope, "method": method})[0] is Match.FULL
            for route in app.router.routes
        )
    ]
    return ", ".join(allowed)


def create_app(settings: Settings, clock: Clock | None = None, fast_path: bool = True) -> FastAPI:
    """Build the web app; loops open on startup and close on shutdown. ``fast_path=False``
    leaves the decision routes to FastAPI's routing (tests compare the two)."""
    http_stats = LoopStats()
    loops: dict[str, Loop] = {}
    auth = Authenticator(settings, http_stats)
    limiter = limiter_from_settings(settings, http_stats)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        auth.start()  # keys read before the first request
        mode = "thread" if clock is not None else settings.pipeline
        configs = {name: settings.loop(name) for name in settings.loop_names()}
        for name, cfg in configs.items():
            role: Role = "all" if mode == "thread" else "serve"
            loop = Loop(cfg, settings.data_dir, name, clock, role=role)
            loop.start()
            loops[name] = loop
        if settings.stream.enabled:
            run_here = settings.stream.runner == "embedded"
            app.state.stream = Stream(settings.stream, settings.data_dir, run=run_here)
        supervisor = None
        if mode == "process":
            supervisor = PipelineSupervisor(
                lambda: start_pipeline_process(settings.data_dir, configs),
                stop_pipeline_process,
                http_stats,
            )
        app.state.supervisor = supervisor
        app.state.pipeline = f"process {supervisor.pid}" if supervisor else mode
        log.info(
            "recloop serving loops %s from %s (pipeline: %s)",
            sorted(loops),
            settings.data_dir,
            app.state.pipeline,
        )
        # What startup made (libraries, loops, models) lives as long as the server: moved out
        # of the collector's generations, a full collection no longer walks it in the middle
        # of a request (README, "Measurements behind the code"; benchmarks/gc_pause.py).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            if supervisor is not None:
                supervisor.close()
            for loop in loops.values():
                loop.close()
            loops.clear()
            if app.state.stream is not None:
                app.state.stream.close()
                app.state.stream = None
            auth.close()
            if limiter is not None:
                await limiter.aclose()

    app = FastAPI(
        title="recloop",
        version=__version__,
        description="Real-time recommendation and decision making with reinforcement learning.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.loops = loops
    app.state.http_stats = http_stats
    app.state.auth = auth
    app.state.stream = None
    app.state.evaluation_slots = personalizer_evaluations.new_evaluation_slots()

    @app.exception_handler(RecloopError)
    async def recloop_error(request: Request, exc: RecloopError) -> JSONResponse:
        if personalizer_routing.is_personalizer_path(request.url.path):
            count_rejection(exc, http_stats)
            return personalizer_routing.from_recloop_error(exc)
        return error_problem(exc, request.url.path, http_stats)

    @app.exception_handler(personalizer_routing.PersonalizerError)
    async def personalizer_error(
        request: Request, exc: personalizer_routing.PersonalizerError
    ) -> JSONResponse:
        http_stats.inc(f"rejected_total:personalizer-{exc.code}")
        return personalizer_routing.error_response(exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_problem(exc.errors(), request.url.path, http_stats)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Starlette's own errors (404 no route, 405, a body FastAPI could not read) as
        problem details too, never ``{"detail": ...}``. FastAPI turns any error while
        reading a body into a 400; the typed one under it (a chunked body past the size
        limit: 413) is answered instead."""
        cause = exc.__cause__
        if isinstance(cause, RecloopError):
            return await recloop_error(request, cause)
        if exc.status_code == 400 and cause is not None:  # too deep, bad UTF-8...
            cause = MalformedJSONError(f"the body could not be read as JSON: {cause!r}"[:300])
            return await recloop_error(request, cause)
        kind = _HTTP_KINDS.get(exc.status_code, "http-error")
        title = HTTPStatus(exc.status_code).phrase if exc.status_code in _STATUSES else "Error"
        if personalizer_routing.is_personalizer_path(request.url.path):
            http_stats.inc(f"rejected_total:personalizer-{kind}")
            detail = str(exc.detail)
            if exc.status_code == 404:
                detail = personalizer_routing.unsupported(request).message
            response = personalizer_routing.error_response(exc.status_code, detail)
        else:
            http_stats.inc(f"rejected_total:{kind}")
            response = problem(exc.status_code, kind, title, str(exc.detail), request.url.path)
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        if exc.status_code == 405:
            response.headers["Allow"] = allowed_methods(app, request.scope)
        return response

    for router in (decisions.router, models.router, policies.router, items.router):
        app.include_router(router, prefix="/v1")
        app.include_router(router, prefix="/v1/loops/{loop}")
    app.include_router(stream_routes.router, prefix="/v1")
    app.include_router(users_routes.router, prefix="/v1")
    app.include_router(keys.router, prefix="/v1")
    app.include_router(dashboard.router)
    for prefix in ("/personalizer", "/loops/{loop}/personalizer"):
        app.include_router(personalizer_admin.router, prefix=prefix)  # before the catch-all
        app.include_router(personalizer_multislot.router, prefix=prefix)
        app.include_router(personalizer_evaluations.router, prefix=prefix)
        app.include_router(personalizer.router, prefix=prefix)
    app.openapi = openapi_builder(app, settings)  # type: ignore[method-assign]

    registry = CollectorRegistry(auto_describe=True)
    registry.register(
        LoopCollector(
            lambda: {n: lp.stats for n, lp in loops.items()},
            http_stats,
            lambda: app.state.stream.metrics() if app.state.stream is not None else None,
        )
    )

    @app.get(
        "/healthz",
        tags=["ops"],
        summary="Liveness: 200 while the server can do its job (503: restart it)",
        responses={
            503: {"description": "Starting, the pipeline stayed dead, or the data dir was lost"}
        },
    )
    async def healthz(request: Request) -> JSONResponse:
        if not loops:
            return JSONResponse({"status": "starting"}, status_code=503)
        pipeline = health.pipeline_status(app.state.supervisor, settings.pipeline)
        lost = health.storage_lost(http_stats)
        ok = health.live(pipeline) and not lost
        body = {
            "status": "ok" if ok else "unhealthy",
            "loops": {n: lp.model_version for n, lp in loops.items()},
            "pipeline": pipeline,
        }
        if lost:
            body["storage"] = "lost"
        if not auth.is_admin(request.scope):  # no PIDs or versions without an admin key
            body = public_health(body)
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get(
        "/readyz",
        tags=["ops"],
        summary="Readiness: 200 when the pipeline runs, the stores answer, lags are small",
        responses={503: {"description": "Not ready, with the reasons per loop"}},
    )
    async def readyz(request: Request) -> JSONResponse:
        if not loops:
            return JSONResponse({"status": "starting"}, status_code=503)
        pipeline = health.pipeline_status(app.state.supervisor, settings.pipeline)
        per_loop = {
            name: await run_in_threadpool(health.loop_readiness, lp, settings.ready_max_lag)
            for name, lp in loops.items()
        }
        ok = bool(pipeline["alive"]) and all(v["ready"] for v in per_loop.values())
        body = {"status": "ready" if ok else "not-ready", "pipeline": pipeline, "loops": per_loop}
        if not auth.is_admin(request.scope):  # lags, hosts, paths: admin keys only
            body = public_readiness(body)
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get(
        "/metrics",
        tags=["ops"],
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    if fast_path:  # added first: it runs inside Guard (size limit, API key)
        app.add_middleware(DecisionFastPath, loops=loops, stats=http_stats)
    app.add_middleware(AuditTrail, auth=auth, stats=http_stats)  # inside Guard: knows the key
    app.add_middleware(Guard, settings=settings, stats=http_stats, auth=auth, limiter=limiter)
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory for worker processes: settings from RECLOOP_* and RECLOOP_CONFIG."""
    return create_app(load_settings())
