"""Backfill: the past ticks of a range run once each, oldest first, as the schedule would have run them.

A request comes as the ``stan.dev/backfill-request`` annotation; ``status.backfill``
answers it and records how far it has come. Each tick is taken by a claim of its
own, a compare-and-swap of ``status.backfill.handled``, which records the run
and the tick in the ledger of ticks that ran (``stan_core.ledger``) in the same
write: so a tick runs once, across restarts and replicas, and never one that
ran already, on schedule or by an earlier backfill. The task's concurrency
policy decides each run as it would a tick's; under BufferOne the backfill
hands over its next tick only once none waits, so its runs go one after another.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import logging
import secrets
from collections.abc import Callable

from stan_core import backfill, config, ledger, models
from stan_operator import supervision, ticks
from stan_operator.clock import Clock
from stan_operator.effects import ClaimLost, EventRecorder, Patch, TaskStatusStore, Unreachable
from stan_operator.runs import Runs
from stan_operator.task_state import Task
from stan_operator.watched import Keeper

CLAIM_PATIENCE_SECONDS = 30.0
log = logging.getLogger(__name__)


class Backfills:
    def __init__(
        self,
        configuration: config.OperatorConfig,
        keeper: Keeper[models.StanTaskStatus],
        store: TaskStatusStore,
        events: EventRecorder,
        runs: Runs,
        supervisor: supervision.Supervisor,
        clock: Clock,
        current: Callable[[Task], bool],
    ) -> None:
        """``current``: whether the task is still the one the scheduler knows, and not paused."""
        self._allow_seconds = configuration.allowSecondSchedules
        self._keeper = keeper
        self._store = store
        self._events = events
        self._runs = runs
        self._supervisor = supervisor
        self._clock = clock
        self._current = current

    def take_up(self, task: Task, metadata: dict) -> None:
        """Start the backfill the annotation asks for, unless it is answered and done, or already going here
        (a replica that leads after a restart or a failover goes on where status says it stopped)."""
        request = backfill.requested(metadata)
        state = task.status.backfill
        if request is None or self._keeper.standby or task.backfilling == request.id:
            return
        if state is not None and state.request == request.id and (state.finishedAt or state.refusal):
            return
        task.backfilling = request.id
        self._supervisor.spawn(f"backfill {request.id} of {task.namespace}/{task.name}", self._run(task, request))

    async def _run(self, task: Task, request: backfill.Request) -> None:
        try:
            async with task.lock:
                if not await self._begun(task, request):
                    return
            while True:
                going = self._runs.going(task)
                if task.spec is not None and going and ticks.waits(task.spec, busy=task.waiting is not None):
                    await asyncio.wait(going, return_when=asyncio.FIRST_COMPLETED)
                    continue
                async with task.lock:
                    if not await self._next(task, request):
                        return
        finally:
            if task.backfilling == request.id:
                task.backfilling = None

    async def _begun(self, task: Task, request: backfill.Request) -> bool:
        """Answer the request in status: refused, or begun (unless it was before a restart)."""
        state = task.status.backfill
        if state is not None and state.request == request.id:
            return True
        spec = task.spec
        if spec is None or not self._current(task):
            return False
        until = backfill.accounted_until(task.status, task.created)
        refused = backfill.refusal(spec, task.status, request.start, request.end, until, self._allow_seconds)
        end = min(request.end, until)
        pending, already = backfill.to_run(spec, task.status, request.start, end, self._allow_seconds)
        begun = models.Backfill.model_validate(
            {
                "request": request.id,
                "from": request.start,
                "to": end,
                "schedule": spec.schedule,
                "timeZone": spec.timeZone,
                "ticks": 0 if refused else len(pending),
                "alreadyRan": 0 if refused else already,
            }
        )
        now = self._clock()
        if refused or not pending:
            begun = begun.model_copy(
                update={"refusal": f"{refused[0]}: {refused[1]}" if refused else None, "finishedAt": now}
            )
        await self._keeper.write(task, {"backfill": begun.model_dump(mode="json", by_alias=True)})
        if refused:
            await self._keeper.announce(task, "BackfillRefused", f"Backfill {request.id} refused: {begun.refusal}.")
            return False
        await self._keeper.announce(
            task,
            "Backfill",
            f"Backfill {request.id}: {len(pending)} ticks from {models.format_timestamp(request.start)} to "
            f"{models.format_timestamp(end)} to run, oldest first; {already} already ran.",
        )
        return bool(pending)

    async def _next(self, task: Task, request: backfill.Request) -> bool:
        """Claim and start the next tick; False once there is none, or the backfill is no longer this one's."""
        state = task.status.backfill
        spec = task.spec
        if state is None or state.request != request.id or state.finishedAt or spec is None or self._keeper.standby:
            return False
        if not self._current(task):
            return False  # paused or changed: it goes on once the task is seen again
        ran_as = spec.model_copy(update={"schedule": state.schedule, "timeZone": state.timeZone})
        after = state.start if state.through is None else state.through + datetime.timedelta(microseconds=1)
        pending = list(
            itertools.islice(backfill.pending(ran_as, task.status, after, state.end, self._allow_seconds), 2)
        )
        if not pending:
            return False
        tick, now = pending[0], self._clock()
        run, behind = self._runs.asked(task, spec, f"run_{secrets.token_hex(6)}", tick, f"backfill {request.id}")
        skipped = run.result == models.RunResult.SKIPPED.value
        last = len(pending) == 1
        advanced = state.model_copy(
            update={"through": tick, "handled": state.handled + 1, "finishedAt": now if last else None}
        )
        runs = ticks.bounded([run, *task.status.recentRuns], spec.runHistoryLimit)
        fields: Patch = {
            "backfill": advanced.model_dump(mode="json", by_alias=True),
            "recentRuns": [item.dumped() for item in runs],
        }
        if not skipped:
            fields |= ledger.recorded(task.status, ran_as, tick, self._allow_seconds)
            if not behind:
                fields["lastRunAt"] = models.format_timestamp(now)
        try:
            stored = await self._store.claim(
                task.namespace,
                task.name,
                current=task.stored,
                expected={"backfill/request": request.id, "backfill/handled": state.handled},
                fields=fields,
                give_up_after=CLAIM_PATIENCE_SECONDS,
            )
        except (ClaimLost, Unreachable) as lost:
            log.warning("backfill %s of %s/%s stopped at %s: %s", request.id, task.namespace, task.name, tick, lost)
            return False
        task.adopt(stored)
        if not skipped:
            await self._runs.replace(task, ticks.replaced(spec, task.status.recentRuns, tick, set(task.active)))
            self._runs.start(task, self._runs.context(task, spec, tick, run.runId), behind)
        if last:
            await self._events.post(
                task.ref, "Backfilled", f"Backfill {request.id}: all {advanced.handled} ticks handled."
            )
        return not last
