"""Finding a deployment's processes by what they do, not by name: the serving processes
hold the listening socket, the pipeline child is the other child of the server.

(Matching command lines by name would also match this harness's own shell.)
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import suppress
from pathlib import Path

from benchmarks.common import descendants


def _listening_inodes(port: int) -> set[str]:
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with suppress(OSError), open(table) as handle:
            for line in list(handle)[1:]:
                cols = line.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    found.add(cols[9])
    return found


def _holds(pid: int, inodes: set[str]) -> bool:
    targets = {f"socket:[{i}]" for i in inodes}
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in targets:
                    return True
    except OSError:
        return False
    return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def helpers_of(root: int) -> list[int]:
    """Children that are multiprocessing's bookkeeping, not part of the server."""
    return [p for p in descendants(root) if "resource_tracker" in _cmdline(p)]


def serving_processes(root: int, port: int) -> list[int]:
    """The server's processes that hold its listening socket, other than ``root`` when it
    has workers (uvicorn's manager holds the socket too, but does not serve)."""
    inodes = _listening_inodes(port)
    held = [p for p in descendants(root) if _holds(p, inodes)]
    workers = [p for p in held if p != root]
    return workers or held


def pipeline_processes(root: int, port: int) -> list[int]:
    """The server's other children: its pipeline process."""
    inodes = _listening_inodes(port)
    skip = set(helpers_of(root))
    return [p for p in descendants(root) if p != root and p not in skip and not _holds(p, inodes)]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def kill(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, sig)


def wait_for(check: object, timeout: float, every: float = 0.1) -> bool:
    """Poll ``check()`` (a callable) until it is true or ``timeout`` passes."""
    assert callable(check)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with suppress(Exception):
            if check():
                return True
        time.sleep(every)
    return False
