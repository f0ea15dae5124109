"""Open the stores of one loop. The embedded default is SQLite files under the data dir;
other backends plug in here without the rest of recloop changing."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from recloop.core.errors import InvalidInputError
from recloop.core.protocols import (
    BehaviourLog,
    EventLog,
    ItemStore,
    JoinedStore,
    ModelStore,
    StreamStore,
)
from recloop.settings import LoopSettings, StreamSettings
from recloop.stores.sqlite_files import LOG_FILE
from recloop.stores.sqlite_items import SqliteItemStore
from recloop.stores.sqlite_joined import open_joined
from recloop.stores.sqlite_log import SqliteEventLog
from recloop.stores.sqlite_models import SqliteModelStore
from recloop.stores.sqlite_stream import (
    SqliteBehaviourLog,
    SqliteRecommendationStore,
    SqliteStreamState,
)


@dataclass(frozen=True, slots=True)
class LoopStores:
    log: EventLog
    joined: JoinedStore
    models: ModelStore

    def close(self) -> None:
        self.log.close()
        self.joined.close()
        self.models.close()


def _postgres_url(settings: LoopSettings) -> str | None:
    """``storage_url`` when set (it must name PostgreSQL); None for the SQLite default."""
    url = settings.storage_url
    if url and not url.startswith(("postgresql://", "postgres://")):
        raise InvalidInputError(f"unsupported storage_url {url!r}: use postgresql://...")
    return url or None


def open_stores(settings: LoopSettings, loop_dir: Path) -> LoopStores:
    """PostgreSQL when ``storage_url`` names one; else SQLite files under the loop's
    directory: ``loop.db`` (the event log and dead letters), ``joined.db`` (joined
    examples, offsets, shared state) and ``models.db``."""
    url = _postgres_url(settings)
    if url:
        from recloop.stores.postgres import (
            PostgresEventLog,
            PostgresJoinedStore,
            PostgresModelStore,
        )

        loop = loop_dir.name
        with ExitStack() as opened:  # each holds a pool (threads, a connection): on a
            log = PostgresEventLog(url, loop)  # failure, close the ones already open
            opened.callback(log.close)
            joined = PostgresJoinedStore(url, loop)
            opened.callback(joined.close)
            models = PostgresModelStore(url, loop, keep=settings.keep_model_versions)
            opened.pop_all()
        return LoopStores(log=log, joined=joined, models=models)
    durability = settings.durability
    return LoopStores(
        log=SqliteEventLog(loop_dir / LOG_FILE, durability),
        joined=open_joined(loop_dir, durability),
        models=SqliteModelStore(
            loop_dir / "models.db", durability, keep=settings.keep_model_versions
        ),
    )


def open_item_store(settings: LoopSettings, loop_dir: Path) -> ItemStore:
    """The loop's item catalogue: in PostgreSQL when ``storage_url`` names one (keyed by
    the loop's name, ``loop_dir.name``), else ``items.db`` under the loop's directory."""
    url = _postgres_url(settings)
    if url:
        from recloop.stores.postgres_items import PostgresItemStore

        return PostgresItemStore(url, loop_dir.name)
    return SqliteItemStore(loop_dir / "items.db", settings.durability)


# -- the stream's stores (``streaming/`` opens its stores here only: .importlinter) --------
def open_behaviour_log(s: StreamSettings, stream_dir: Path) -> BehaviourLog:
    """The behaviour events: NATS JetStream with ``log_url``, else ``events.db``."""
    if s.log_url:
        if not s.log_url.startswith(("nats://", "tls://")):
            raise InvalidInputError(f"unsupported log_url {s.log_url!r}: use nats://...")
        from recloop.bus.nats_log import NatsBehaviourLog

        subject = "recloop.events." + s.nats_stream.lower()
        return NatsBehaviourLog(s.log_url, stream=s.nats_stream, subject=subject)
    return SqliteBehaviourLog(stream_dir / "events.db")


def open_recommendations(s: StreamSettings, stream_dir: Path) -> StreamStore:
    """The precomputed lists: Redis with ``recommendations_url``, else ``recs.db``."""
    if s.recommendations_url:
        if not s.recommendations_url.startswith(("redis://", "rediss://", "unix://")):
            raise InvalidInputError(
                f"unsupported recommendations_url {s.recommendations_url!r}: use redis://..."
            )
        from recloop.stores.redis_stream import RedisRecommendationStore

        return RedisRecommendationStore(s.recommendations_url, prefix=s.recommendations_prefix)
    return SqliteRecommendationStore(stream_dir / "recs.db")


def open_stream_state(stream_dir: Path) -> SqliteStreamState:
    """The embedded runner's user state and snapshots (``state.db``)."""
    return SqliteStreamState(stream_dir / "state.db")


def open_loop_files(loop_dir: Path) -> tuple[ModelStore, ItemStore | None]:
    """An embedded loop's model store and, if it has one, its item catalogue, read from its
    SQLite files (the stream's ``loop:NAME`` policy serves that loop's newest model)."""
    items = loop_dir / "items.db"
    return SqliteModelStore(loop_dir / "models.db"), (
        SqliteItemStore(items) if items.exists() else None
    )
