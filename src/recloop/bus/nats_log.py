"""Behaviour events over NATS JetStream: the stream's durable log shared between processes
and machines (ingesting servers publish, one runner consumes).

An append publishes each event to a JetStream stream with the event id as ``Nats-Msg-Id``
and returns once JetStream acknowledged it (stored per the stream's storage, file by
default): the stream sequence is the event's offset. JetStream drops a repeated id within
its duplicate window (``duplicate_window_seconds``); the SQLite log refuses repeats
forever. Reads fetch by sequence with a pull consumer that starts where the reader asks.

nats-py is asyncio; this class is called from threads, so it owns an event loop thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import orjson

from recloop.core.types import BehaviourEvent

T = TypeVar("T")


class NatsBehaviourLog:
    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        stream: str = "RECLOOP_EVENTS",
        subject: str = "recloop.events",
        duplicate_window_seconds: float = 120.0,
        timeout: float = 10.0,
    ) -> None:
        self._url, self._stream, self._subject = url, stream, subject
        self._timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._sub: Any = None
        self._next: int | None = None
        self._lock = threading.Lock()
        self._run(self._connect(duplicate_window_seconds))

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self._timeout + 5)

    async def _connect(self, window: float) -> None:
        import nats
        from nats.js.api import StreamConfig

        self._nc = await nats.connect(self._url, connect_timeout=self._timeout)
        self._js = self._nc.jetstream(timeout=self._timeout)
        config = StreamConfig(name=self._stream, subjects=[self._subject], duplicate_window=window)
        try:
            await self._js.add_stream(config)
        except Exception:  # exists with another config: keep it (an operator's choice)
            await self._js.stream_info(self._stream)

    def append(self, events: Sequence[BehaviourEvent]) -> list[int | None]:
        return self._run(self._append(events))

    async def _append(self, events: Sequence[BehaviourEvent]) -> list[int | None]:
        acks = await asyncio.gather(
            *(
                self._js.publish(
                    self._subject,
                    orjson.dumps(e.to_dict()),
                    headers={"Nats-Msg-Id": e.event_id},
                )
                for e in events
            )
        )
        return [None if ack.duplicate else int(ack.seq) for ack in acks]

    def read(self, after: int, limit: int) -> list[tuple[int, BehaviourEvent]]:
        with self._lock:
            return self._run(self._read(after, limit))

    async def _read(self, after: int, limit: int) -> list[tuple[int, BehaviourEvent]]:
        from nats.errors import TimeoutError as NatsTimeout
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        if self._sub is None or self._next != after + 1:
            if self._sub is not None:
                await self._sub.unsubscribe()
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=after + 1,
                ack_policy=AckPolicy.NONE,
                inactive_threshold=60.0,
            )
            self._sub = await self._js.pull_subscribe(self._subject, config=config)
            self._next = after + 1
        try:
            msgs = await self._sub.fetch(limit, timeout=0.05)
        except NatsTimeout:
            return []
        out = []
        for msg in msgs:
            seq = int(msg.metadata.sequence.stream)
            out.append((seq, BehaviourEvent.from_dict(orjson.loads(msg.data))))
        if out:
            self._next = out[-1][0] + 1
        return out

    def last_offset(self) -> int:
        info = self._run(self._js.stream_info(self._stream))
        return int(info.state.last_seq)

    def delete_stream(self) -> None:
        """Remove the JetStream stream and its events (tests, re-deployments)."""
        self._run(self._js.delete_stream(self._stream))

    def close(self) -> None:
        async def _close() -> None:
            if self._sub is not None:
                await self._sub.unsubscribe()
            await self._nc.drain()

        try:
            self._run(_close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
