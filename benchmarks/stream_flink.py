"""The stream as a Flink job (PyFlink, thread mode, a local MiniCluster): throughput and
end-to-end latency.

* job: events/s of ``recloop.streaming.flink`` over a 100k-event spool (bounded: read
  the spool, finish), from the first event the job meets to its last write -- goal >= 15,000
  events/s; the wall time with the JVM and MiniCluster start is printed beside it. Two
  workloads: stream_embedded's (20k users, 5k items: nearly every event is a new list to
  write) and the equivalence test's (2k users, 500 items). The yardstick, measured in the
  same run over the first spool: a bare keyed last-N PyFlink job in thread mode (key by user,
  a ValueState of the last 10 items, nothing written): the least a keyed Python operator
  costs here;
* end to end: ``Stream.ingest`` appends one event to the durable log, the continuous job
  (spooler -> FileSource monitor -> users -> global -> store) makes the user's list, and the
  probe polls the recommendation store until the new state version shows -- goal p99 <= 200
  ms.

Needs the ``flink`` extra (``apache-flink``); without it, says so and prints no figures.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import cli, figure, print_table, summarize
from benchmarks.stream_embedded import events
from recloop.settings import StreamSettings
from recloop.stores.sqlite_stream import SqliteBehaviourLog
from recloop.streaming.flink import have_pyflink, read_states, run_flink_job, spool
from recloop.streaming.service import Stream

BENCH = "stream_flink"


def logged(data_dir: Path, n: int, users: int, items: int) -> None:
    """``n`` events in the data dir's durable log, as the API would have logged them."""
    evs = [e.to_dict() for e in events(n, users=users, items=items, seed=1)]
    with Stream(StreamSettings(), data_dir, run=False) as s:
        for i in range(0, n, 5000):
            s.ingest(evs[i : i + 5000])


def job_rate(data_dir: Path, n: int) -> tuple[float, float]:
    """(events/s from the first event met to the last write, events/s of the wall time)."""
    t0 = time.perf_counter()
    run_flink_job(StreamSettings(), data_dir, bounded=True, checkpoint_dir=None, restore_from=None)
    wall = time.perf_counter() - t0
    offset, _, meta = read_states(data_dir)
    assert offset == n, offset
    steady = meta["elements_since_open"] / (meta["flushed_at"] - meta["first_element_at"])
    return steady, n / wall


def yardstick_rate(spool_dir: Path, out: Path, n: int) -> tuple[float, float]:
    """A bare keyed last-N PyFlink job in thread mode over the same spool."""
    import orjson
    from pyflink.common import Configuration, Types, WatermarkStrategy
    from pyflink.datastream import KeyedProcessFunction, StreamExecutionEnvironment
    from pyflink.datastream.connectors.base import Sink
    from pyflink.datastream.connectors.file_system import FileSource, StreamFormat
    from pyflink.datastream.state import ValueStateDescriptor
    from pyflink.java_gateway import get_gateway

    class LastN(KeyedProcessFunction):  # type: ignore[misc]
        def open(self, ctx: Any) -> None:
            self.state = ctx.get_state(ValueStateDescriptor("last", Types.STRING()))
            self.n, self.first = 0, 0.0

        def process_element(self, line: str, ctx: Any) -> Any:
            if not self.n:
                self.first = time.time()
            self.n += 1
            e = orjson.loads(line)
            raw = self.state.value()
            last = orjson.loads(raw) if raw else []
            last.append((e["item_id"], e["behaviour"], e["timestamp"]))
            self.state.update(orjson.dumps(last[-10:]).decode())
            return iter(())

        def close(self) -> None:
            out.write_text(json.dumps({"n": self.n, "first": self.first, "last": time.time()}))

    cfg = Configuration()
    cfg.set_string("python.execution-mode", "thread")
    cfg.set_string("python.executable", sys.executable)
    cfg.set_string("python.pythonpath", os.pathsep.join(p for p in sys.path if p))
    env = StreamExecutionEnvironment.get_execution_environment(cfg)
    env.set_parallelism(1)
    source = FileSource.for_record_stream_format(
        StreamFormat.text_line_format(), str(spool_dir)
    ).build()
    lines = env.from_source(source, WatermarkStrategy.no_watermarks(), "spool")
    done = lines.key_by(lambda line: orjson.loads(line)["user_id"], Types.STRING()).process(
        LastN(), Types.INT()
    )
    jvm = get_gateway().jvm
    done.sink_to(Sink(jvm.org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink()))
    t0 = time.perf_counter()
    env.execute("yardstick-last-n")
    wall = time.perf_counter() - t0
    seen = json.loads(out.read_text())
    assert seen["n"] == n, seen
    return n / (seen["last"] - seen["first"]), n / wall


def end_to_end(data_dir: Path, probes: int) -> dict[str, float]:
    """Ingest one event, poll the store until its list shows; the continuous job runs."""
    stop = threading.Event()
    failed: list[BaseException] = []

    def job() -> None:
        try:
            run_flink_job(StreamSettings(), data_dir, bounded=False, checkpoint_dir=None,
                          restore_from=None, stop=stop)  # fmt: skip
        except BaseException as exc:  # surfaced below
            failed.append(exc)

    samples: list[float] = []
    with Stream(StreamSettings(), data_dir, run=False) as s:  # creates the log first
        thread = threading.Thread(target=job, daemon=True)
        thread.start()
        warm = [{"user_id": f"w{i}", "item_id": f"i{i % 50}", "behaviour": "view"}
                for i in range(200)]  # fmt: skip
        s.ingest(warm)
        deadline = time.monotonic() + 120
        while s.recs.get("w199") is None:  # the job is up and caught up
            if failed or time.monotonic() > deadline:
                stop.set()
                raise RuntimeError(f"the continuous job did not start: {failed}")
            time.sleep(0.05)
        for i in range(probes):
            user = f"probe{i}"
            t0 = time.perf_counter()
            s.ingest([{"user_id": user, "item_id": f"i{i % 50}", "behaviour": "click"}])
            while s.recs.get(user) is None:
                if time.perf_counter() - t0 > 10:
                    stop.set()
                    raise RuntimeError(f"no recommendation for {user}: {failed}")
                time.sleep(0.001)
            samples.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.02)
    stop.set()
    thread.join(timeout=60)
    return summarize(samples)


def main(quick: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if not have_pyflink():
        print("stream_flink: apache-flink is not installed (pip install -e '.[flink]'); skipped")
        return rows
    n = 20_000 if quick else 100_000
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bare = 0.0
        for name, users, items in (
            ("job_events_per_s", 20_000, 5_000),
            ("job_events_per_s_2k_users", 2_000, 500),
        ):
            data_dir = tmp / name
            logged(data_dir, n, users, items)
            log = SqliteBehaviourLog(data_dir / "_stream" / "events.db")
            spool_dir = data_dir / "_stream" / "spool"
            spool(log, spool_dir)
            log.close()
            extra: dict[str, Any] = {}
            if not bare:
                bare, bare_wall = yardstick_rate(spool_dir, tmp / "yardstick.json", n)
                extra = {"yardstick_bare_last_n_per_s": bare,
                         "yardstick_wall_events_per_s": bare_wall}  # fmt: skip
            rate, wall = job_rate(data_dir, n)
            rows.append(
                figure(
                    BENCH,
                    name,
                    rate,
                    15_000.0,
                    n,
                    wall_events_per_s=wall,
                    **extra,
                    ratio_to_yardstick=rate / bare,
                    users=users,
                    items=items,
                    spool_files=len(list(spool_dir.glob("events-*.jsonl"))),
                )
            )
        e2e = end_to_end(tmp / "e2e", 30 if quick else 200)
        rows.append(
            figure(
                BENCH,
                "end_to_end_p99_ms",
                e2e["p99"],
                200.0,
                int(e2e["n"]),
                p50_ms=e2e["p50"],
                via="Stream.ingest -> spool -> FileSource -> job -> recs store",
            )
        )
    print_table("flink stream", rows)
    return rows


if __name__ == "__main__":
    cli(main, "the stream as a Flink job: throughput and end-to-end latency")
