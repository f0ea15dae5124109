"""Opening SQLite the way every embedded store needs it."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal

Durability = Literal["process", "power"]


def connect(path: Path, durability: Durability = "process") -> sqlite3.Connection:
    """WAL connection. 'process' (synchronous=NORMAL) survives kill -9 once a commit
    returns; 'power' (synchronous=FULL) also survives power loss, at an fsync per commit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if durability == 'power' else 'NORMAL'}")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn
