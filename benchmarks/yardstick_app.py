"""Yardstick for the web tier: the plainest FastAPI ranker worth comparing recloop with.

POST /v1/rank: parse JSON, build VW ADF text naively, predict, epsilon-greedy pick, insert the
request and the answer into SQLite (WAL, synchronous=NORMAL, one commit per request), answer.
Served by uvicorn exactly as ``recloop serve`` is:

    YARDSTICK_MODEL=model.vw YARDSTICK_DB=y.db uvicorn benchmarks.yardstick_app:app
"""

from __future__ import annotations

import os
import random
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import vowpalwabbit
from fastapi import FastAPI, Request
from fastapi.responses import Response

EPSILON = 0.2
DEFAULT_ARGS = "--cb_adf --cb_type mtr -q CA --quiet"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    model = os.environ.get("YARDSTICK_MODEL")
    ws = vowpalwabbit.Workspace(f"--quiet -i {model}" if model else DEFAULT_ARGS)
    conn = sqlite3.connect(
        os.environ.get("YARDSTICK_DB", "yardstick.db"),
        check_same_thread=False,
        isolation_level=None,
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS decisions "
        "(id INTEGER PRIMARY KEY, event_id TEXT UNIQUE NOT NULL, body BLOB NOT NULL)"
    )
    app.state.ws, app.state.conn = ws, conn
    try:
        yield
    finally:
        conn.close()
        ws.finish()


app = FastAPI(lifespan=lifespan)


def _text(features: dict[str, Any]) -> str:
    return " ".join(f"{k}:{v}" for k, v in features.items())


@app.post("/v1/rank")
async def rank(request: Request) -> Response:
    body = orjson.loads(await request.body())
    context, actions = body.get("context", {}), body["actions"]
    lines = [f"shared |C {_text(context)}"]
    lines += [f"|A id={a['id']} {_text(a.get('features', {}))}" for a in actions]
    costs = request.app.state.ws.predict(lines)
    n = len(actions)
    best = min(range(n), key=costs.__getitem__)
    chosen = random.randrange(n) if random.random() < EPSILON else best
    probs = [EPSILON / n + (1.0 - EPSILON if i == best else 0.0) for i in range(n)]
    order = [chosen, *(i for i in sorted(range(n), key=costs.__getitem__) if i != chosen)]
    event_id = uuid.uuid4().hex
    answer = {
        "event_id": event_id,
        "ranking": [{"id": actions[i]["id"], "probability": probs[i]} for i in order],
        "reward_action_id": actions[chosen]["id"],
    }
    request.app.state.conn.execute(  # autocommit: one committed transaction per request
        "INSERT INTO decisions(event_id, body) VALUES (?, ?)",
        (event_id, orjson.dumps({"request": body, "answer": answer})),
    )
    return Response(orjson.dumps(answer), media_type="application/json")


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
