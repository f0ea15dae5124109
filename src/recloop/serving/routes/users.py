"""Privacy over HTTP: forget everything about one user (``DELETE /v1/users/{user_id}``).

An administrator's operation (an admin-scoped key where keys have scopes). It searches
every loop's log and the stream's, and may wait on a runner elsewhere, so it runs in the
thread pool, never on the event loop.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from recloop.privacy.forget import forget_user
from recloop.privacy.matching import MAX_USER_ID

router = APIRouter(tags=["users"])


@router.delete(
    "/users/{user_id}",
    summary="Forget a user: delete their decisions, rewards, events, state and lists",
    description="Deletes, from every backend of every loop and of the stream: decisions "
    "whose context names the user (at each loop's `user_fields`) with their rewards, "
    "activations, dead letters and joined examples; the user's behaviour events, stream "
    "state and recommendation list. Answers the counts deleted per loop and for the "
    "stream; a second call answers zeros. Learned models are not unlearned. `complete: "
    "false`: the NATS scan bound was reached (ask again); `pending: true`: a stream runner "
    "in another process has not confirmed within `wait` seconds (it will when it next "
    "runs).",
    responses={422: {"description": "A user id that is too long, not printable, or reserved"}},
)
async def forget(
    request: Request,
    user_id: str = Path(min_length=1, max_length=MAX_USER_ID, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$"),
    wait: float = Query(10.0, ge=0.0, le=60.0, description="Seconds to wait for a runner"),
) -> dict[str, Any]:
    app = request.app
    loops = {name: (lp.settings, lp.dir) for name, lp in app.state.loops.items()}
    clock = next(iter(app.state.loops.values())).clock if app.state.loops else None
    now = clock.now() if clock is not None else None

    def run() -> dict[str, Any]:
        import time

        return forget_user(user_id, loops, app.state.stream, now or time.time(), wait)

    report = await run_in_threadpool(run)
    app.state.http_stats.inc("users_forgotten_total")
    return report
