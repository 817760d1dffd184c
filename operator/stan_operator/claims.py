"""Exactly once, also across restarts: a run is recorded only by claiming its tick.

The claim replaces status while the object is at the resourceVersion this
operator last wrote or read, with ``lastScheduledAt`` moved to the tick. When
the object has changed since, it is read afresh, and the claim goes on only
while ``lastScheduledAt`` is still the value this operator saw. A claim that
loses (another operator took the tick) has its run cancelled, and nothing of it
is recorded. After a restart the stored ``lastScheduledAt`` says which ticks
were accounted for.
"""

from __future__ import annotations

import asyncio
import datetime
import logging

from stan_core import models
from stan_operator import ticks
from stan_operator.clock import Clock
from stan_operator.effects import ClaimLost, Patch, TaskStatusStore
from stan_operator.task_state import Task

CLAIMS_IN_FLIGHT = 32
"""At a shared tick thousands of tasks are due at once; a few dozen claims in flight keep the API
server busy without a thousand requests timing out in its queue."""
SHORTEST_PATIENCE_SECONDS = 1.0
"""How long a claim waits out an unreachable API server even when its tick's deadline has passed."""
log = logging.getLogger(__name__)


class Claims:
    def __init__(self, store: TaskStatusStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self.in_flight = asyncio.Semaphore(CLAIMS_IN_FLIGHT)

    async def take(
        self,
        task: Task,
        tick: datetime.datetime,
        run: models.Run,
        following: datetime.datetime | None,
        *,
        remaining: int | None,
        deadline: datetime.datetime,
        recorded: Patch,
    ) -> bool:
        """Take the tick, recording ``run``, the next run's time ``following`` and the runs ``remaining``
        with it, and ``recorded``, the ledger's record of a tick that runs; False when another claim won.
        Counting down maxRuns in the claim makes it exact: a tick counts once, whichever replica claims it.

        The server's stored status becomes the task's; the API server is waited for until ``deadline``."""
        runs = ticks.bounded([run, *task.status.recentRuns], task.spec.runHistoryLimit if task.spec else 1)
        expected = models.format_timestamp(task.status.lastScheduledAt) if task.status.lastScheduledAt else None
        fields: Patch = {
            "lastScheduledAt": models.format_timestamp(tick),
            "nextRunAt": models.format_timestamp(following) if following else None,
            "recentRuns": [item.dumped() for item in runs],
            "remainingRuns": remaining,
            **ticks.outcome_times(run),
            **recorded,
        }
        if run.result != models.RunResult.SKIPPED.value and run.startedAt is not None:
            fields["lastRunAt"] = models.format_timestamp(run.startedAt)
        try:
            stored = await self._store.claim(
                task.namespace,
                task.name,
                current=task.stored,
                expected={"lastScheduledAt": expected},
                fields=fields,
                give_up_after=max(SHORTEST_PATIENCE_SECONDS, (deadline - self._clock()).total_seconds()),
            )
        except ClaimLost as lost:
            log.info("tick %s of %s/%s not claimed (%s); resyncing", tick, task.namespace, task.name, lost.reason)
            return False
        task.adopt(stored)
        return True
