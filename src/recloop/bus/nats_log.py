"""Behaviour events over NATS JetStream: the stream's durable log shared between processes
and machines (ingesting servers publish, one runner consumes).

An append publishes each event to a JetStream stream with the event id as ``Nats-Msg-Id``
and returns once JetStream acknowledged it (stored per the stream's storage, file by
default): the stream sequence is the event's offset. JetStream drops a repeated id within
its duplicate window (``duplicate_window_seconds``); the SQLite log refuses repeats
forever. Reads fetch by sequence with a pull consumer that starts where the reader asks.

Outages. A failed append means the caller was told so and nothing is sent later:

* the client keeps no buffer while it reconnects (``pending_size=0``: nats-py would
  otherwise hold publishes made during an outage and send them on reconnecting, logging
  events whose caller got an error long before), so an append while NATS is away fails at
  once, having sent nothing;
* an append waits at most ``publish_timeout`` for JetStream's acknowledgements. Events
  on the wire when NATS fell may or may not be stored: the error says so, and sending the
  batch again unchanged (same event ids) within the duplicate window logs each event once.

Failures are raised as ``StoreUnavailableError`` (reason ``nats``, retry after 2 s): a 503
problem for a caller, a pause for the runner. The client reconnects for ever
(nats-py's default gives up after 60 tries, two minutes, and then the process could never
log again). After a reconnect, or a pause longer than half the consumer's inactivity
threshold, or when the consumer is found gone, the reader makes a fresh consumer from its
offset, so nothing is skipped or read twice.

nats-py is asyncio; this class is called from threads, so it owns an event loop thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import orjson

from recloop.core.errors import StoreUnavailableError
from recloop.core.types import BehaviourEvent

T = TypeVar("T")
log = logging.getLogger(__name__)

INACTIVE_THRESHOLD = 60.0
"""Seconds after which JetStream deletes a reader's consumer nobody fetched from."""
CHECK_CONSUMER_EVERY = 5.0
"""While reads find nothing, check this often that the consumer still exists."""


class NatsBehaviourLog:
    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        stream: str = "RECLOOP_EVENTS",
        subject: str = "recloop.events",
        duplicate_window_seconds: float = 120.0,
        timeout: float = 10.0,
        publish_timeout: float = 5.0,
    ) -> None:
        self._url, self._stream, self._subject = url, stream, subject
        self._timeout = timeout
        self._publish_timeout = publish_timeout
        self._window = duplicate_window_seconds
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._sub: Any = None
        self._next: int | None = None
        self._renew = False
        self._last_fetch = 0.0
        self._last_check = 0.0
        self._lock = threading.Lock()
        self._run(self._connect(duplicate_window_seconds), self._timeout + 5)

    def _unavailable(self, what: str) -> StoreUnavailableError:
        exc = StoreUnavailableError(
            f"NATS JetStream (the behaviour log) unavailable: {what}", reason="nats"
        )
        exc.retry_after = 2
        return exc

    def _run(self, coro: Coroutine[Any, Any, T], wait: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(wait)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise self._unavailable(f"no answer within {wait:.0f} s") from None

    async def _connect(self, window: float) -> None:
        import nats
        from nats.js.api import StreamConfig

        async def disconnected() -> None:
            log.warning("NATS %s: disconnected; reconnecting", self._url)

        async def reconnected() -> None:
            self._renew = True
            log.warning("NATS %s: reconnected", self._url)

        async def error(exc: Exception) -> None:  # nats-py's default logs a traceback each try
            log.info("NATS %s: %r", self._url, exc)

        self._nc = await nats.connect(
            self._url,
            connect_timeout=self._timeout,
            max_reconnect_attempts=-1,
            reconnect_time_wait=1.0,
            pending_size=0,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            error_cb=error,
        )
        self._js = self._nc.jetstream(timeout=self._timeout)
        config = StreamConfig(name=self._stream, subjects=[self._subject], duplicate_window=window)
        try:
            await self._js.add_stream(config)
        except Exception:  # exists with another config: keep it (an operator's choice)
            await self._js.stream_info(self._stream)

    @property
    def connected(self) -> bool:
        return bool(self._nc.is_connected)

    def _check_connected(self) -> None:
        if not self._nc.is_connected:
            raise self._unavailable("not connected (the client is reconnecting)")

    def append(self, events: Sequence[BehaviourEvent]) -> list[int | None]:
        self._check_connected()  # nothing sent, nothing buffered for later
        return self._run(self._append(events), self._publish_timeout + 2)

    async def _append(self, events: Sequence[BehaviourEvent]) -> list[int | None]:
        results = await asyncio.gather(
            *(
                self._js.publish(
                    self._subject,
                    orjson.dumps(e.to_dict()),
                    timeout=self._publish_timeout,
                    headers={"Nats-Msg-Id": e.event_id},
                )
                for e in events
            ),
            return_exceptions=True,
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise self._unavailable(
                f"{len(failed)} of {len(events)} events not acknowledged ({failed[0]!r}); "
                "those may or may not be logged: send the batch again unchanged (same "
                f"event ids) within {self._window:.0f} s and each event is logged once"
            )
        return [None if ack.duplicate else int(ack.seq) for ack in results]  # type: ignore[union-attr]

    def read(self, after: int, limit: int) -> list[tuple[int, BehaviourEvent]]:
        with self._lock:
            self._check_connected()  # reconnected, it makes a fresh consumer (below)
            return self._run(self._read(after, limit), self._timeout + 5)

    async def _read(self, after: int, limit: int) -> list[tuple[int, BehaviourEvent]]:
        import nats.errors
        import nats.js.errors

        now = time.monotonic()
        stale = self._renew or now - self._last_fetch > INACTIVE_THRESHOLD / 2
        try:
            if self._sub is None or self._next != after + 1 or stale:
                await self._subscribe(after)
            self._last_fetch = now
            try:
                msgs = await self._sub.fetch(limit, timeout=0.05)
            except TimeoutError:  # nothing new (nats' TimeoutError is one too)
                if now - self._last_check > CHECK_CONSUMER_EVERY:
                    self._last_check = now
                    try:
                        await self._sub.consumer_info()
                    except nats.js.errors.NotFoundError:  # reaped, or NATS restarted
                        self._renew = True  # the next read makes a fresh one
                return []
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            self._renew = True  # the next read makes a fresh consumer from its offset
            raise self._unavailable(f"reading: {exc!r}") from None
        out = []
        for msg in msgs:
            seq = int(msg.metadata.sequence.stream)
            out.append((seq, BehaviourEvent.from_dict(orjson.loads(msg.data))))
        if out:
            self._next = out[-1][0] + 1
        return out

    async def _subscribe(self, after: int) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        old, self._sub = self._sub, None
        self._renew = False
        if old is not None:
            with contextlib.suppress(Exception):  # gone with the connection: NATS reaps it
                await old.unsubscribe()
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=after + 1,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=INACTIVE_THRESHOLD,
        )
        self._sub = await self._js.pull_subscribe(self._subject, config=config)
        self._next = after + 1
        self._last_check = time.monotonic()

    def last_offset(self) -> int:
        self._check_connected()
        try:
            info = self._run(self._js.stream_info(self._stream), self._timeout + 1)
        except StoreUnavailableError:
            raise
        except Exception as exc:
            raise self._unavailable(f"stream info: {exc!r}") from None
        return int(info.state.last_seq)

    def forget_user(self, user_id: str, max_scan: int = 1_000_000) -> tuple[int, int, bool]:
        """Delete every event of one user (privacy); returns (deleted, scanned, complete).

        Subjects do not carry the user (one subject per stream), so no purge by subject
        can find them: the stream is read from its first sequence by an ephemeral consumer,
        at most ``max_scan`` messages, and each of the user's messages is deleted by its
        sequence (JetStream erases it; sequences are never reused, so readers' offsets
        keep their meaning). ``complete`` is False when the bound stopped the scan before
        the end of the stream: the caller says so and may ask again."""
        self._check_connected()
        return self._run(self._forget(user_id, max_scan), max(120.0, self._timeout * 4))

    async def _forget(self, user_id: str, max_scan: int) -> tuple[int, int, bool]:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        info = await self._js.stream_info(self._stream)
        first, last = int(info.state.first_seq), int(info.state.last_seq)
        if int(info.state.messages) == 0:
            return 0, 0, True
        needle = b'"user_id":' + orjson.dumps(user_id)
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=first,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=INACTIVE_THRESHOLD,
        )
        sub = await self._js.pull_subscribe(self._subject, config=config)
        found: list[int] = []
        scanned, seen = 0, first - 1
        try:
            while scanned < max_scan and seen < last:
                try:
                    msgs = await sub.fetch(min(1000, max_scan - scanned), timeout=1.0)
                except TimeoutError:
                    break  # nothing more to deliver: the rest was deleted meanwhile
                for msg in msgs:
                    seen = int(msg.metadata.sequence.stream)
                    if seen > last:
                        break
                    scanned += 1
                    if needle in msg.data and orjson.loads(msg.data).get("user_id") == user_id:
                        found.append(seen)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        for seq in found:
            await self._js.delete_msg(self._stream, seq)
        return len(found), scanned, seen >= last or scanned < max_scan

    def delete_stream(self) -> None:
        """Remove the JetStream stream and its events (tests, re-deployments)."""
        self._run(self._js.delete_stream(self._stream), self._timeout + 5)

    def close(self) -> None:
        async def _close() -> None:
            # Every append already has its acknowledgement, so there is nothing to drain
            # (and draining a pull subscription waits out nats-py's 30 s drain timeout).
            await self._nc.close()

        try:
            with contextlib.suppress(StoreUnavailableError):
                self._run(_close(), 5.0)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
