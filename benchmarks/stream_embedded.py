"""The embedded stream: throughput, end-to-end latency, lookups, memory.

* processor: the pure keyed logic (state, popularity, trigger, popularity policy), against
  a yardstick in the same run (a bare dict of last-N deques: the least any keyed state costs);
* runner: the embedded runner from the durable SQLite log (read, process, write each
  triggered list, snapshot) -- goal >= 30,000 events/s on one core;
* end to end over HTTP: ``POST /v1/events`` for a user, then ``GET`` their recommendations
  until the new state version shows (a ``recloop serve`` subprocess) -- goal p99 <= 20 ms;
* ``GET recommendations`` in-process store lookup p99 -- goal <= 2 ms;
* memory of the user state per 1M users.
"""

from __future__ import annotations

import collections
import gc
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from benchmarks.common import cli, figure, free_port, print_table, rss_mb, summarize
from benchmarks.web_api import ROOT, Server, _child_env, _http
from recloop.core.types import BehaviourEvent
from recloop.settings import StreamSettings
from recloop.streaming.processor import StreamProcessor
from recloop.streaming.service import Stream

BENCH = "stream_embedded"


def events(n: int, users: int, items: int, seed: int = 0) -> Iterator[BehaviourEvent]:
    """A skewed e-commerce-like stream with a little disorder."""
    rng = random.Random(seed)
    t = 1_700_000_000.0
    kinds = ["view"] * 6 + ["click"] * 2 + ["cart", "buy"]
    for i in range(n):
        t += rng.expovariate(50.0)
        item = f"i{int(rng.paretovariate(1.2)) % items}"
        user = f"u{rng.randrange(users)}"
        yield BehaviourEvent(user, item, rng.choice(kinds), t - rng.uniform(0, 2.0), f"e{i}")


def processor_rate(n: int) -> tuple[float, float]:
    evs = list(events(n, users=20_000, items=5_000))
    proc = StreamProcessor()
    t0 = time.perf_counter()
    for e in evs:
        proc.process(e)
    rate = n / (time.perf_counter() - t0)
    last: dict[str, collections.deque[tuple[str, str, float]]] = {}
    t1 = time.perf_counter()
    for e in evs:
        q = last.get(e.user_id)
        if q is None:
            q = last[e.user_id] = collections.deque(maxlen=10)
        q.append((e.item_id, e.behaviour, e.timestamp))
    return rate, n / (time.perf_counter() - t1)


def runner_rate(n: int, tmp: Path) -> tuple[float, float, dict[str, Any]]:
    evs = [e.to_dict() for e in events(n, users=20_000, items=5_000, seed=1)]
    with Stream(StreamSettings(), tmp / "runner", run=False) as s:
        t0 = time.perf_counter()
        for i in range(0, n, 500):
            s.ingest(evs[i : i + 500])
        ingest = n / (time.perf_counter() - t0)
        assert s.start_runner(background=False) and s.runner is not None
        t1 = time.perf_counter()
        s.runner.run_until_idle()
        rate = n / (time.perf_counter() - t1)
        counters = s.runner.counters.as_dict()
    return rate, ingest, counters


def lookups(tmp: Path, n: int) -> dict[str, float]:
    with Stream(StreamSettings(), tmp / "runner", run=False) as s:
        users = [f"u{i}" for i in range(2000)]
        samples = []
        for i in range(n):
            t0 = time.perf_counter_ns()
            s.recommendations(users[i % len(users)])
            samples.append((time.perf_counter_ns() - t0) / 1e6)
    return summarize(samples)


def end_to_end(tmp: Path, probes: int) -> tuple[dict[str, float], dict[str, float]]:
    port = free_port()
    data = tmp / "e2e"
    cmd = [
        sys.executable,
        "-m",
        "recloop.cli",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data),
    ]
    server = Server("recloop", cmd, _child_env(RECLOOP_PIPELINE="thread"), port, tmp / "e2e.log")
    try:
        server.wait_ready()
        warm = [
            {"user_id": f"w{i}", "item_id": f"i{i % 50}", "behaviour": "view"} for i in range(500)
        ]
        assert _http(port, "POST", "/v1/events", warm)[0] == 200
        e2e, gets = [], []
        for i in range(probes):
            user = f"probe{i}"
            body = {"user_id": user, "item_id": f"i{i % 50}", "behaviour": "click"}
            t0 = time.perf_counter()
            status, _ = _http(port, "POST", "/v1/events", body)
            assert status == 200
            while True:
                g0 = time.perf_counter()
                status, raw = _http(port, "GET", f"/v1/users/{user}/recommendations")
                gets.append((time.perf_counter() - g0) * 1000)
                answer = orjson.loads(raw)
                if answer["source"] == "state":
                    break
                if time.perf_counter() - t0 > 5:
                    raise RuntimeError(f"no recommendation for {user}: {answer}")
            e2e.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.01)
        return summarize(e2e), summarize(gets)
    finally:
        server.stop()


def memory_per_million(users: int) -> tuple[float, int]:
    gc.collect()
    before = rss_mb()
    proc = StreamProcessor()
    for e in events(users * 3, users=users, items=5_000, seed=3):
        proc.process(BehaviourEvent.from_dict(e.to_dict()))  # as the runner reads the log
    gc.collect()
    used = rss_mb() - before
    return used * 1_000_000 / len(proc.users), len(proc.users)


def main(quick: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    n = 20_000 if quick else 200_000
    rate, bare = processor_rate(n)
    rows.append(
        figure(
            BENCH,
            "processor_events_per_s",
            rate,
            None,
            n,
            yardstick_bare_last_n_per_s=bare,
            ratio_to_yardstick=rate / bare,
        )
    )
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        runner, ingest, counters = runner_rate(n, tmp)
        rows.append(
            figure(
                BENCH,
                "runner_events_per_s",
                runner,
                30_000.0,
                n,
                triggers=counters["triggers"],
                snapshots=counters["snapshots"],
            )
        )
        rows.append(figure(BENCH, "ingest_events_per_s", ingest, None, n, batch=500))
        look = lookups(tmp, 2_000 if quick else 20_000)
        rows.append(
            figure(
                BENCH,
                "get_recommendations_inprocess_p99_ms",
                look["p99"],
                2.0,
                int(look["n"]),
                p50_ms=look["p50"],
            )
        )
        e2e, gets = end_to_end(tmp, 50 if quick else 300)
        rows.append(
            figure(
                BENCH,
                "end_to_end_p99_ms",
                e2e["p99"],
                20.0,
                int(e2e["n"]),
                p50_ms=e2e["p50"],
                via="POST /v1/events -> GET shows it",
            )
        )
        rows.append(
            figure(
                BENCH,
                "get_recommendations_http_p99_ms",
                gets["p99"],
                None,
                int(gets["n"]),
                p50_ms=gets["p50"],
            )
        )
    per_million, measured = memory_per_million(20_000 if quick else 1_000_000)
    rows.append(
        figure(
            BENCH, "state_memory_per_1m_users_mb", per_million, None, measured, events_per_user=3
        )
    )
    print_table("embedded stream", rows)
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    cli(main, "the embedded stream: throughput, latency, lookups, memory")
