"""Behaviour events in, precomputed recommendations out.

Whatever may wait on the network (NATS, Redis) runs in the thread pool, never on the event
loop: an outage of either must not stall unrelated requests. The embedded SQLite stores
answer in microseconds and stay on the loop.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from recloop.core.errors import InvalidInputError, MalformedJSONError, StreamDisabledError
from recloop.streaming.events import MAX_INT_ID
from recloop.streaming.service import Stream

router = APIRouter(tags=["stream"])

INT_ID = {"type": "integer", "minimum": -MAX_INT_ID, "maximum": MAX_INT_ID}
"""An id may be an integer every JSON parser keeps exact; a wider one must be a string."""
EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["user_id", "item_id", "behaviour"],
    "properties": {
        "user_id": {"anyOf": [{"type": "string", "minLength": 1}, INT_ID]},
        "item_id": {"anyOf": [{"type": "string", "minLength": 1}, INT_ID]},
        "behaviour": {
            "type": "string",
            "enum": ["view", "click", "cart", "favourite", "buy", "custom"],
        },
        "timestamp": {"type": "number", "description": "Event time, seconds since the epoch"},
        "event_id": {
            "anyOf": [{"type": "string", "minLength": 1}, {"type": "null"}],
            "description": "Unique; a repeat is not logged twice (null or absent: a new id)",
        },
        "features": {"anyOf": [{"type": "object"}, {"type": "null"}]},
    },
}


def _stream(request: Request) -> Stream:
    stream: Stream | None = request.app.state.stream
    if stream is None:
        raise StreamDisabledError("the behaviour stream is disabled (stream.enabled = false)")
    return stream


def _parse(body: bytes, content_type: str) -> tuple[list[Any], list[int], list[dict[str, Any]]]:
    """Events and their line numbers; JSON lines that do not parse are reported, not fatal."""
    if "ndjson" in content_type or "jsonl" in content_type:
        events, lines, errors = [], [], []
        for number, line in enumerate(body.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                events.append(orjson.loads(line))
                lines.append(number)
            except orjson.JSONDecodeError as exc:
                errors.append({"line": number, "error": f"malformed JSON: {exc}"})
        return events, lines, errors
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedJSONError(f"the body is not valid JSON: {exc}") from None
    items = parsed if isinstance(parsed, list) else [parsed]
    return items, list(range(1, len(items) + 1)), []


@router.post(
    "/events",
    summary="Log behaviour events (one object, a JSON array, or JSON lines)",
    description="Valid events are durably logged before the answer; invalid ones (and, for "
    "JSON lines, lines that do not parse) are reported by line and not logged. 422 when no "
    "event was valid; 413 for a batch over `stream.max_batch_events`; 503 (with "
    "Retry-After) when the log is unreachable: send the same batch again (same event ids).",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            EVENT_SCHEMA,
                            {"type": "array", "items": EVENT_SCHEMA, "minItems": 1},
                        ]
                    }
                },
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        }
    },
)
async def post_events(request: Request) -> Response:
    stream = _stream(request)
    body = await request.body()
    events, lines, errors = _parse(body, request.headers.get("content-type", ""))
    if not events and not errors:
        raise InvalidInputError("no events in the body")
    if stream.remote_log:
        report = await run_in_threadpool(stream.ingest, events, lines)
    else:
        report = stream.ingest(events, lines)
    report.errors = sorted(errors + report.errors, key=lambda e: int(e["line"]))
    if errors:
        stream.stats.inc("stream_rejected_total:malformed-line", len(errors))
    payload = report.to_dict()
    if report.accepted == 0 and report.duplicates == 0:
        payload = {
            "type": "https://recloop.dev/problems/invalid-input",
            "title": "Invalid input",
            "status": 422,
            "instance": request.url.path,
            "detail": "no valid event in the batch: "
            + "; ".join(f"line {e['line']}: {e['error']}" for e in report.errors[:5]),
            **payload,
        }
        return Response(orjson.dumps(payload), 422, media_type="application/problem+json")
    return Response(orjson.dumps(payload), 200, media_type="application/json")


@router.get(
    "/users/{user_id}/recommendations",
    summary="A user's precomputed recommendations (popular items when none or stale)",
    description="`source` says what served: `state` (the user's list) or `popular`. While "
    "the recommendation store is unreachable the last popular list this server read is "
    "served with `degraded: true`, or 503 (with Retry-After) when it has read none.",
)
async def recommendations(
    request: Request, user_id: str, k: int = Query(10, ge=1, le=1000)
) -> dict[str, Any]:
    stream = _stream(request)
    if stream.remote_recs:
        return await run_in_threadpool(stream.recommendations, user_id, k)
    return stream.recommendations(user_id, k)


@router.get("/stream", summary="The stream's progress: logged and processed offsets, users")
async def stream_status(request: Request) -> dict[str, Any]:
    return await run_in_threadpool(_stream(request).status)


@router.get("/stream/dead-letters", summary="Behaviour events refused as too late or failed")
async def stream_dead_letters(
    request: Request, limit: int = Query(100, ge=1, le=1000)
) -> list[dict[str, Any]]:
    return await run_in_threadpool(_stream(request).dead_letters, limit)
