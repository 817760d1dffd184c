"""The one clock of the timing path.

The scheduler, its runs and the heartbeat loop read the time only through the clock they are given, and
take the length of every sleep from it, so that tests drive them on instants the tests choose.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

Clock = Callable[[], datetime.datetime]


def system_clock() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def seconds_until(clock: Clock, moment: datetime.datetime) -> float:
    """How long to sleep until ``moment`` by ``clock``; none when it has come."""
    return max(0.0, (moment - clock()).total_seconds())
