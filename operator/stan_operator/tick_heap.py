"""One heap of next ticks for every task the operator sees.

One coroutine sleeps until the earliest tick, instead of one sleeping
coroutine per task (kopf timers and daemons would also add finalizers).
Entries are never removed: a task whose next tick moves pushes the new one,
and the caller drops a popped entry that is no longer the task's next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import heapq

from stan_core.index import Key


class TickHeap:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Key]] = []
        self._sequence = 0
        self._wakeup = asyncio.Event()

    def __len__(self) -> int:
        """Entries waiting, stale ones (of a task rescheduled or gone) included until they come due."""
        return len(self._heap)

    def push(self, key: Key, tick: datetime.datetime) -> None:
        """Add a tick; one earlier than any waiting wakes the sleeper."""
        self._sequence += 1
        entry = (tick.timestamp(), self._sequence, key)
        heapq.heappush(self._heap, entry)
        if self._heap[0] is entry:
            self._wakeup.set()

    def pop_due(self, now: datetime.datetime) -> list[tuple[Key, datetime.datetime]]:
        """Take out every entry at or before ``now``, earliest first."""
        moment = now.timestamp()
        due = []
        while self._heap and self._heap[0][0] <= moment:
            tick, _, key = heapq.heappop(self._heap)
            due.append((key, datetime.datetime.fromtimestamp(tick, datetime.UTC)))
        return due

    async def sleep(self, now: datetime.datetime, longest: float) -> None:
        """Sleep until the earliest tick, for ``longest`` seconds at most, or until an earlier one is pushed."""
        self._wakeup.clear()
        timeout = min(self._heap[0][0] - now.timestamp(), longest) if self._heap else longest
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout)
