"""The job: the pipeline added to a ``StreamExecutionEnvironment``, run on a local
MiniCluster (``run_flink_job``, what ``recloop stream --runner flink`` calls), or submitted
to a cluster with this file as the script::

    flink run -pyexec /opt/venv/bin/python -py "$(python -c \\
        'import recloop.streaming.flink.job as m; print(m.__file__)')" \\
        --data-dir /shared/data --checkpoint-dir /shared/checkpoints

PyFlink and the operators (which import it) are imported only once a job is built.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from recloop.settings import StreamSettings
from recloop.stores.sqlite_stream import SqliteBehaviourLog
from recloop.streaming.flink.environment import flink_config, pf
from recloop.streaming.flink.spool import Spooler, spool_base


def build_job(
    env: Any,
    settings: StreamSettings,
    data_dir: Path,
    *,
    bounded: bool,
    parallelism: int = 1,
    monitor_ms: int = 50,
    flush_ms: int = 20,
    flush_events: int = 5000,
) -> None:
    """Add the pipeline to a ``StreamExecutionEnvironment`` (also for ``flink run``)."""
    from recloop.streaming.flink.fused_operator import Fused
    from recloop.streaming.flink.global_operator import Global
    from recloop.streaming.flink.operators import Users

    common = pf("common")
    fs = pf("datastream.connectors.file_system")
    types = common.Types
    spool_dir = Path(data_dir).resolve() / "_stream" / "spool"
    spool_dir.mkdir(parents=True, exist_ok=True)
    raw_settings = settings.model_dump()
    job_args: dict[str, Any] = {  # what Global and Fused need of the job
        "settings": raw_settings,
        "data_dir": str(Path(data_dir).resolve()),
        "flush_ms": flush_ms,
        "flush_events": flush_events,
        "view_ms": int(settings.snapshot_every_seconds * 1000),  # user states: as snapshots
    }
    builder = fs.FileSource.for_record_stream_format(
        fs.StreamFormat.text_line_format(), str(spool_dir)
    )
    if not bounded:
        builder = builder.monitor_continuously(common.Duration.of_millis(monitor_ms))
    lines = (
        env.from_source(builder.build(), common.WatermarkStrategy.no_watermarks(), "spool")
        .uid("recloop-spool")
        .set_parallelism(1)
    )
    base = spool_base(spool_dir)
    if parallelism == 1:  # both halves in one operator: one keyed Python stage, not two
        written = (
            _forward_key_by(lines, lambda _: 0, types.INT())
            .process(Fused(base, **job_args), types.INT())
            .uid("recloop-stream")
            .name("stream")
            .set_parallelism(1)
        )
    else:

        def user_of(line: str) -> str:
            return str(orjson.loads(line)["user_id"])

        placed = (
            lines.key_by(user_of, key_type=types.STRING())
            .process(Users(raw_settings), types.STRING())
            .uid("recloop-users")
            .name("users")
            .set_parallelism(parallelism)
        )
        written = (
            placed.key_by(lambda _: 0, key_type=types.INT())
            .process(Global(base, **job_args), types.INT())
            .uid("recloop-global")
            .name("global")
            .set_parallelism(1)
        )
    jvm = pf("java_gateway").get_gateway().jvm
    sink = pf("datastream.connectors.base").Sink(
        jvm.org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink()
    )
    written.sink_to(sink).name("done").set_parallelism(1)


def _forward_key_by(stream: Any, key: Callable[[Any], Any], key_type: Any) -> Any:
    """``stream.key_by(key)`` without the shuffle, for a stream of parallelism 1 whose next
    operator has parallelism 1 too (every key is in the one subtask): Flink then chains the
    two operators in one task instead of passing each record through the network stack
    (less time per event and stage: README, "Measurements behind the code"). PyFlink's
    ``key_by``, with Flink's ``reinterpretAsKeyedStream`` in place of ``keyBy``."""
    from recloop.streaming.flink.operators import AddKey

    jvm = pf("java_gateway").get_gateway().jvm
    types = pf("common").Types
    value_type = pf("common.typeinfo")._from_java_type(
        stream._j_data_stream.getTransformation().getOutputType()
    )
    with_key = stream.process(AddKey(key), output_type=types.ROW([key_type, value_type]))
    keyed = jvm.org.apache.flink.streaming.api.datastream.DataStreamUtils.reinterpretAsKeyedStream(
        with_key._j_data_stream,
        jvm.KeyByKeySelector(),
        types.ROW([key_type]).get_java_type_info(),
    )
    return pf("datastream.data_stream").KeyedStream(keyed, value_type, stream)


def run_flink_job(
    settings: StreamSettings,
    data_dir: Path,
    *,
    bounded: bool,
    checkpoint_dir: Path | None,
    restore_from: Path | None,
    parallelism: int = 1,
    checkpoint_interval_ms: int = 10_000,
    stop: threading.Event | None = None,
    poll_seconds: float = 0.02,
    monitor_ms: int = 50,
    flush_ms: int = 20,
) -> None:
    """Spool the data dir's log and run the job on a local MiniCluster. Bounded: spool what
    is logged, process it, return. Continuous: keep spooling until ``stop`` is set (then
    cancel the job; retained checkpoints stay) or the job fails."""
    data_dir = Path(data_dir).resolve()
    stream_dir = data_dir / "_stream"
    spool_dir = stream_dir / "spool"
    spool_dir.mkdir(parents=True, exist_ok=True)
    events = SqliteBehaviourLog(stream_dir / "events.db")
    spooler: Spooler | None = None
    try:
        env = pf("datastream").StreamExecutionEnvironment.get_execution_environment(
            flink_config(
                checkpoint_dir=checkpoint_dir,
                restore_from=restore_from,
                checkpoint_interval_ms=checkpoint_interval_ms,
            )
        )
        env.set_parallelism(parallelism)
        env.set_max_parallelism(128)
        env.set_buffer_timeout(5)
        build_job(
            env,
            settings,
            data_dir,
            bounded=bounded,
            parallelism=parallelism,
            monitor_ms=monitor_ms,
            flush_ms=flush_ms,
        )  # before spooling: a fresh job starts from the spool's oldest file
        spooler = Spooler(events, spool_dir)
        if bounded:
            spooler.run()
            env.execute("recloop-stream")
            return
        client = env.execute_async("recloop-stream")
        stop = stop or threading.Event()
        checked = time.monotonic()
        while not stop.wait(poll_seconds):
            spooler.run()
            if time.monotonic() - checked > 2.0:
                checked = time.monotonic()
                status = client.get_job_status().result().name
                if status in ("FAILED", "FINISHED", "CANCELED"):
                    client.get_job_execution_result().result()  # raises the failure
                    raise RuntimeError(f"the Flink job ended: {status}")
        client.cancel().result()
    finally:
        if spooler is not None:
            spooler.close()
        events.close()


def main(argv: Sequence[str] | None = None) -> None:
    """``flink run -py job.py --data-dir ...`` (restore: ``flink run -s <chk-N>``), or
    ``python -m recloop.streaming.flink --spool-only`` to feed the spool."""
    parser = argparse.ArgumentParser(description="recloop's stream as a Flink job")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--bounded", action="store_true")
    parser.add_argument("--checkpoint-dir", type=Path, default=None)
    parser.add_argument("--checkpoint-interval-ms", type=int, default=10_000)
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--spool-only", action="store_true", help="only feed the spool")
    args = parser.parse_args(argv)
    from recloop.settings import load_settings

    loaded = load_settings(args.config, data_dir=args.data_dir)
    stream_dir = loaded.data_dir / "_stream"
    if args.spool_only:
        spooler = Spooler(SqliteBehaviourLog(stream_dir / "events.db"), stream_dir / "spool")
        while True:
            spooler.run()
            time.sleep(0.02)
    env = pf("datastream").StreamExecutionEnvironment.get_execution_environment(
        flink_config(
            checkpoint_dir=args.checkpoint_dir,
            restore_from=None,
            checkpoint_interval_ms=args.checkpoint_interval_ms,
            local=False,
        )
    )
    env.set_parallelism(args.parallelism)
    env.set_max_parallelism(128)
    env.set_buffer_timeout(5)
    build_job(env, loaded.stream, loaded.data_dir, bounded=args.bounded,
              parallelism=args.parallelism)  # fmt: skip
    env.execute("recloop-stream")


if __name__ == "__main__":  # ``flink run -py .../recloop/streaming/flink/job.py``
    main()
