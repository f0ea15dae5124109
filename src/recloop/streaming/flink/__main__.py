"""``python -m recloop.streaming.flink``: the job's command line (``--spool-only`` to feed
the spool; see :func:`recloop.streaming.flink.job.main`)."""

from recloop.streaming.flink.job import main

main()
