"""``/dashboard``: one page to watch every loop learn (no build step, no script libraries:
inline SVG drawn from ``GET /v1/dashboard``). The page needs no key to load; its data and
the rollback buttons use the API key the person types in (kept in the browser)."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from recloop.reporting import loop_report
from recloop.serving.deps import loop_for
from recloop.settings import DEFAULT_LOOP

router = APIRouter(tags=["dashboard"])
PAGE = files("recloop.serving").joinpath("static/dashboard.html")


@router.get("/dashboard", include_in_schema=False)
async def dashboard() -> HTMLResponse:
    return HTMLResponse(PAGE.read_text(encoding="utf-8"))


@router.get("/v1/dashboard", summary="The dashboard's figures for one loop")
def dashboard_data(request: Request, loop: str = DEFAULT_LOOP) -> dict[str, Any]:
    """Not async: it reads the stores, so FastAPI runs it in a worker thread rather than
    holding every other request of the event loop while it does."""
    target = loop_for(request, loop)
    report = loop_report(target)
    report["loops"] = sorted(request.app.state.loops)
    stream = request.app.state.stream
    if stream is not None:
        stats = stream.metrics()
        measured = "stream_lag_seconds_p50" in stats.gauges()
        report["stream"] = {
            "lag_seconds_p50": stats.get("stream_lag_seconds_p50") if measured else None,
            "lag_seconds_p99": stats.get("stream_lag_seconds_p99") if measured else None,
            "users": stats.get("stream_users"),
        }
    else:
        report["stream"] = None
    return report
