"""Open the stores of one loop. The embedded default is SQLite files under the data dir;
other backends plug in here without the rest of recloop changing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from recloop.core.protocols import EventLog, JoinedStore, ModelStore
from recloop.settings import LoopSettings
from recloop.stores.sqlite_log import SqliteEventLog, SqliteJoinedStore
from recloop.stores.sqlite_models import SqliteModelStore


@dataclass(frozen=True, slots=True)
class LoopStores:
    log: EventLog
    joined: JoinedStore
    models: ModelStore

    def close(self) -> None:
        self.log.close()
        self.joined.close()
        self.models.close()


def open_stores(settings: LoopSettings, loop_dir: Path) -> LoopStores:
    """SQLite: ``loop.db`` (log, dead letters, joined, offsets) and ``models.db``."""
    durability = settings.durability
    return LoopStores(
        log=SqliteEventLog(loop_dir / "loop.db", durability),
        joined=SqliteJoinedStore(loop_dir / "loop.db", durability),
        models=SqliteModelStore(
            loop_dir / "models.db", durability, keep=settings.keep_model_versions
        ),
    )
