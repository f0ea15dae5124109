"""The stream runner's background loop: poll, back off while idle, retry while paused.

An idle runner backs off from ``idle_sleep`` to ``max_idle_sleep`` (doubling), so a quiet
stream does not tax the process serving decisions; ``wake`` (set on in-process ingestion)
cuts the wait short. An unreachable log or store (``StoreUnavailableError``) pauses it,
retrying from 0.1 s to 1 s apart; any other error is logged and retried after 0.5 s, so
the stream stays alive (nothing unwritten is ever committed).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from recloop.core.errors import StoreUnavailableError

log = logging.getLogger("recloop.streaming.embedded")


def poll(
    step: Callable[[], int],
    stop: threading.Event,
    wake: threading.Event,
    *,
    on_pause: Callable[[StoreUnavailableError], None],
    on_resume: Callable[[], None],
    idle_sleep: float,
    max_idle_sleep: float,
) -> None:
    """Call ``step`` (which returns how many events it read) until ``stop`` is set."""
    sleep, retry = idle_sleep, 0.1
    while not stop.is_set():
        try:
            read = step()
            on_resume()
            retry = 0.1
            if read == 0:
                wake.wait(sleep)
                wake.clear()
                sleep = min(sleep * 2.0, max_idle_sleep)
            else:
                sleep = idle_sleep
        except StoreUnavailableError as exc:
            on_pause(exc)
            stop.wait(retry)
            retry = min(retry * 2.0, 1.0)
        except Exception:  # keep the stream alive; nothing unwritten is committed
            log.exception("stream step failed")
            stop.wait(0.5)
