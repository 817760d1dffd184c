"""Background work that never ends in silence.

Every coroutine the operator runs beside kopf's handlers goes through here.
A loop that must run for the life of the process (the scheduler, leader
election, each namespace's heartbeat) is restarted after a growing pause when
it raises, and its failure is logged; one-off work (a tick's run, an
on-demand run) has its failure logged. The liveness probe asks ``health()``:
a loop that keeps failing, or that has stopped beating, makes the replica
unhealthy, so that Kubernetes restarts a wedged operator rather than keep it.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

RESTART_PAUSES = (1.0, 2.0, 5.0, 10.0, 30.0)
FAILURE_WINDOW_SECONDS = 300.0
FAILURES_TOLERATED = 3
"""A loop that failed this often within the window is failing, not unlucky."""
log = logging.getLogger(__name__)


class Unhealthy(Exception):
    """What the liveness probe reports; the message names each loop in trouble and why."""


Beat = Callable[[], None]
"""Handed to a kept loop: it calls it whenever it makes progress."""
LoopFunction = Callable[[Beat], Coroutine[Any, Any, None]]


@dataclasses.dataclass
class Loop:
    name: str
    run: LoopFunction
    stale_after: float | None
    beaten_at: float
    failures: collections.deque[tuple[float, str]] = dataclasses.field(default_factory=collections.deque)
    task: asyncio.Task[None] | None = None

    def trouble(self, now: float) -> str | None:
        while self.failures and now - self.failures[0][0] > FAILURE_WINDOW_SECONDS:
            self.failures.popleft()
        if len(self.failures) >= FAILURES_TOLERATED:
            return f"failed {len(self.failures)} times in {FAILURE_WINDOW_SECONDS:.0f}s, last: {self.failures[-1][1]}"
        if self.stale_after is not None and now - self.beaten_at > self.stale_after:
            return f"no progress for {now - self.beaten_at:.0f}s"
        return None


class Supervisor:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._loops: dict[str, Loop] = {}
        self._work: set[asyncio.Task[Any]] = set()

    def keep(self, name: str, run: LoopFunction, *, stale_after: float | None = None) -> None:
        """Run ``run(beat)`` until ``cancel(name)``; ``stale_after``: the longest it may go without a beat."""
        self.cancel(name)
        loop = self._loops[name] = Loop(name, run, stale_after, self._clock())
        loop.task = asyncio.create_task(self._supervise(loop), name=name)

    def cancel(self, name: str) -> None:
        loop = self._loops.pop(name, None)
        if loop is not None and loop.task is not None:
            loop.task.cancel()

    def spawn(self, name: str, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """One-off background work: kept referenced until it ends, and its failure logged."""
        task = asyncio.create_task(work, name=name)
        self._work.add(task)
        task.add_done_callback(self._settle)
        return task

    def _settle(self, task: asyncio.Task[Any]) -> None:
        self._work.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())

    async def _supervise(self, loop: Loop) -> None:
        def beat() -> None:
            loop.beaten_at = self._clock()

        while True:
            try:
                await loop.run(beat)
                reason = "it returned"
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.exception("%s failed; restarting it", loop.name)
                reason = f"{type(error).__name__}: {error}"
            else:
                log.error("%s ended; restarting it", loop.name)
            loop.failures.append((self._clock(), reason))
            await asyncio.sleep(RESTART_PAUSES[min(len(loop.failures), len(RESTART_PAUSES)) - 1])
            loop.beaten_at = self._clock()

    def health(self) -> dict[str, str]:
        """Each loop's state; raises Unhealthy when one is failing or stuck."""
        now = self._clock()
        troubles = {name: trouble for name, loop in self._loops.items() if (trouble := loop.trouble(now))}
        if troubles:
            raise Unhealthy("; ".join(f"{name}: {trouble}" for name, trouble in sorted(troubles.items())))
        return {"loops": str(len(self._loops)), "background work": str(len(self._work))}

    def stop(self) -> None:
        for name in list(self._loops):
            self.cancel(name)
        for task in list(self._work):
            task.cancel()
