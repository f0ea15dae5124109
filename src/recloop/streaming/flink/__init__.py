"""The stream as an Apache Flink (PyFlink DataStream) job: the same pure logic as the
embedded runner (``UserStream.add`` keyed by user, then ``StreamProcessor.after_update``),
with its state in Flink managed state, checkpointed and restorable, and the same results:
identical user states and lists (items, scores, versions) from the same log.

Pipeline (``apache-flink`` 2.3, ``python.execution-mode=thread``), and why::

    parallelism 1 (the default):
    spool/*.jsonl --FileSource--> keyBy(0) --> stream (users + global in one operator)
    parallelism > 1:
    spool/*.jsonl --FileSource--> keyBy(user) --> users ------> keyBy(0) --> global
    (from events.db)                              (UserStream)              (popularity, lists,
                                                                             writes the store)

* **Source** (:mod:`.spool`). Flink 2.x here has no Kafka/JDBC connector and no
  Python-native source, so events travel from the durable log (``events.db``) to Flink as
  JSON-lines files in a spool directory (``_stream/spool``): :class:`Spooler` writes each
  batch as a hidden temp file renamed into place (FileSource never re-reads a file and
  skips names starting with ``.`` or ``_``), named by its first and last log offset. A
  bounded job reads the files there and finishes; a continuous one
  (``monitor_continuously``) picks up new ones.
* **Log order, without a sequencer stage.** FileSource reads files in no particular order
  (seen here: shuffled; its split assigner keeps them in a hash set), yet which events are
  too late (per user) and popularity -- hence every score -- depend on the order events are
  met. Each line carries ``prev`` (the log offset before it) and ``prev_user`` (the same
  user's previous offset): ``users`` places a user's events in their log order, holding
  early ones in keyed MapState; ``global`` meets all events in log order the same way. A
  separate keyed sequencer stage did the same at a cost per event (each keyed Python
  stage costs that in thread mode: README, "Measurements behind the code"); this way
  needs none, and stays exact with the users operator at parallelism > 1.
* **users** (:mod:`.operators`, keyed by ``user_id``): ``UserStream.add`` with the user's
  stream in a ``ValueState`` (its ``to_dict`` as JSON), and a bounded cache of decoded
  streams (a restore calls ``open`` again, which empties it). Every event goes on (applied
  with the new ``UserState`` JSON, late as a dead letter, duplicate) so ``global`` sees
  every offset.
* **global** (:mod:`.global_operator`, keyed by a constant, parallelism 1): popularity in
  managed state (``MapState`` item -> scaled score; a ``ValueState`` with anchor, event
  count, newest event time and log position), rebuilt into ``DecayedPopularity`` on the
  first element after ``open``; then ``StreamProcessor.after_update``.
* **stream** (:mod:`.fused_operator`, parallelism 1: both halves fused in one operator
  keyed by a constant): it meets every event in log order by ``prev`` (so each user's too:
  no ``prev_user`` chain), keeps each user's ``UserStream`` JSON in ``MapState`` (user ->
  ``to_dict``; decoded streams cached, emptied by a restore's ``open``), then runs
  ``global``'s half on the live ``UserState``. Why: every keyed Python stage costs time
  per event in thread mode, and the two-stage form also encoded the user state to pass it
  on and decoded event and state again downstream; fused, the job runs more events per
  second (``benchmarks/stream_flink.py``; README, "Measurements behind the code"). All
  state is still Flink managed state; only the set of users changed since the last view
  write is kept in memory (the stream objects), and after a restore every user in
  ``MapState`` is written to the view again (an idempotent upsert). Its state (uid
  ``recloop-stream``) is not the two-stage form's (``recloop-users``/``recloop-global``):
  a checkpoint restores only into a job of the same form, i.e. parallelism 1 to 1, or > 1
  to > 1 (rescaling works there).
* **Sink: inside ``global`` (or ``stream``).** Lists, user states and dead letters wait in
  managed state (newest per user; ``stream``'s user states: its ``MapState`` of streams)
  and are upserted in batches: lists with ``put_many`` into the store the embedded runner
  uses (``open_recommendations``: ``recs.db`` or Redis; version-guarded, so replays after
  a restore are harmless) on a processing-time timer (``flush_ms``; later under load, so
  flushing stays a small part of the time), user states (``UserState.to_dict``), dead
  letters and the position to ``_stream/flink-state.db`` (:mod:`.state_view`) as often as
  embedded snapshots (``snapshot_every_seconds``), everything at the end of input (an
  event-time timer at the end of time). Why: Python functions get no checkpoint hook, so
  only a batch kept in managed state survives a kill -9 between checkpoint and write; a
  per-record Python sink would commit SQLite once per event, and a FileSink would need a
  loader process and a checkpoint of delay.
* **Thread mode** (:mod:`.environment`): far faster than process mode (README,
  "Measurements behind the code"). The embedded interpreter reads no ``.pth`` files, so a
  local job passes this interpreter's ``sys.path`` on (``python.pythonpath``). At
  parallelism 1 the keyed stage is chained to the source in one task
  (``reinterpretAsKeyedStream`` instead of a shuffle, :mod:`.job`); at parallelism > 1
  both ``keyBy`` are shuffles.

Spool files are replayable history: a fresh (unrestored) job reads them all from the first;
prune only files older than the retained checkpoint you will restore from. Users are not
expired by TTL in the Flink job.

PyFlink is an optional extra: this package and :func:`have_pyflink` import without it; only
the operator modules import it, and only :func:`build_job` imports them.

Run it with ``recloop stream --runner flink`` (a local MiniCluster). On a cluster, the spool
and SQLite files must be on storage every TaskManager sees (or use Redis for the lists)::

    python -m recloop.streaming.flink --spool-only --data-dir /shared/data &
    flink run -pyexec /opt/venv/bin/python -py "$(python -c \\
        'import recloop.streaming.flink.job as m; print(m.__file__)')" \\
        --data-dir /shared/data --checkpoint-dir /shared/checkpoints
"""

from recloop.streaming.flink.environment import flink_config, have_pyflink, latest_checkpoint
from recloop.streaming.flink.job import build_job, main, run_flink_job
from recloop.streaming.flink.spool import SPOOL_DB, SPOOL_PREFIX, Spooler, spool, spool_base
from recloop.streaming.flink.state_view import STATE_VIEW, FlinkStateView, read_states

__all__ = [
    "SPOOL_DB",
    "SPOOL_PREFIX",
    "STATE_VIEW",
    "FlinkStateView",
    "Spooler",
    "build_job",
    "flink_config",
    "have_pyflink",
    "latest_checkpoint",
    "main",
    "read_states",
    "run_flink_job",
    "spool",
    "spool_base",
]
