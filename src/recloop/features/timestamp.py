"""Times: hour of day and day of week as points on a circle, and the item's age.

23:00 and 01:00 are two hours apart, not 22: sine and cosine of the hour (and of the weekday)
put them next to each other for a linear model. An item's age depends on when it is ranked,
so it is not cached with the item: the catalogue adds it at decision time, as a log2 bucket
of hours (fresh, a day, a week old...), which changes rarely enough that the VW text cache
still hits.
"""

from __future__ import annotations

import math
import time
from typing import Any


def cyclical(epoch_seconds: float) -> dict[str, Any]:
    t = time.gmtime(epoch_seconds)
    hour = (t.tm_hour + t.tm_min / 60.0) / 24.0 * 2 * math.pi
    day = t.tm_wday / 7.0 * 2 * math.pi
    return {
        "hour_sin": round(math.sin(hour), 4),
        "hour_cos": round(math.cos(hour), 4),
        "dow_sin": round(math.sin(day), 4),
        "dow_cos": round(math.cos(day), 4),
    }


def age_bucket(epoch_seconds: float, now: float) -> str:
    """``a<k>``: age in hours, bucketed by powers of two (``a-1`` for a time in the future)."""
    hours = (now - epoch_seconds) / 3600.0
    if hours < 0:
        return "a-1"
    return f"a{int(math.log2(1.0 + hours))}"
