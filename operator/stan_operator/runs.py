"""Run supervision: starting a task's actions, following them, and recording how they ended.

An in-process run starts at its tick and its claim is written alongside: when
thousands of tasks share a tick their claims queue at the API server for
seconds, and the runs need not wait in that queue. A run that ends before its
claim is sent is claimed and recorded in one write. Such an action's only
effect is the result it returns, so a cancelled one leaves nothing behind. A
Job-backed action creates its Job, an effect outside the operator, only once
its claim is stored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import secrets
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from kubernetes_asyncio import client

from stan_core import config, ids, models
from stan_operator import supervision, ticks
from stan_operator.actions import Action, Outcome, RunContext, jobs
from stan_operator.clock import Clock
from stan_operator.effects import EventRecorder, JobControl
from stan_operator.metrics import Metrics
from stan_operator.task_state import Task
from stan_operator.watched import Keeper

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Launch:
    """A due tick as decided at its moment: skipped (with the reason), or its action started."""

    context: RunContext
    decided: datetime.datetime
    skip_reason: str | None
    started: asyncio.Future[datetime.datetime] | None
    execution: asyncio.Task[Outcome] | None
    behind: tuple[asyncio.Future[Any], ...] = ()
    """The runs it waits for (concurrencyPolicy: BufferOne): it starts once its claim is stored and they ended."""


MAX_MESSAGE_LENGTH = 512
"""A run's message as status keeps it: every status write carries runHistoryLimit of them."""


def concluded(run: models.Run, outcome: Outcome, at: datetime.datetime) -> models.Run:
    """``run`` as it ended at ``at``, its message cut to ``MAX_MESSAGE_LENGTH``."""
    message = outcome.message
    if len(message) > MAX_MESSAGE_LENGTH:
        message = message[: MAX_MESSAGE_LENGTH - 1] + "…"
    return run.but(result=outcome.result, message=message, finishedAt=at)


class Runs:
    def __init__(
        self,
        api: client.ApiClient,
        configuration: config.OperatorConfig,
        actions: Mapping[str, Action],
        supervisor: supervision.Supervisor,
        keeper: Keeper[models.StanTaskStatus],
        events: EventRecorder,
        jobs: JobControl,
        clock: Clock,
        statuses: Callable[[str], Mapping[str, models.StanTaskStatus]],
        metrics: Metrics,
        ended: Callable[[Task], Awaitable[None]],
    ) -> None:
        """``statuses``: every task's status in a namespace, by name, as the watch has them; ``ended`` is
        called, under the task's lock, after every run recorded as ended."""
        self._api = api
        self._config = configuration
        self._actions = actions
        self._supervisor = supervisor
        self._keeper = keeper
        self._events = events
        self._jobs = jobs
        self._clock = clock
        self._statuses = statuses
        self._metrics = metrics
        self._ended = ended

    def job_backed(self, spec: models.StanTaskSpec) -> bool:
        return spec.action in self._config.jobActions

    def context(
        self, task: Task, spec: models.StanTaskSpec, scheduled_at: datetime.datetime, run_id: str
    ) -> RunContext:
        return RunContext(
            api=self._api,
            namespace=task.namespace,
            name=task.name,
            uid=task.uid,
            task_id=ids.task_id(task.name),
            spec=spec,
            scheduled_at=scheduled_at,
            run_id=run_id,
            configuration=self._config,
            namespace_tasks=lambda: self._statuses(task.namespace),
        )

    def launch(self, task: Task, spec: models.StanTaskSpec, tick: datetime.datetime, due: datetime.datetime) -> Launch:
        """Decide whether a tick, due at ``due`` with its jitter, runs, and if so start its in-process
        action; the scheduler claims and records it. A Job is an effect outside the operator, so a
        Job-backed action starts only once its claim is stored."""
        decided = self._clock()
        skip_reason = ticks.skip_reason(spec, due, decided, busy=task.busy, waiting=task.waiting is not None)
        context = self.context(task, spec, tick, f"run_{secrets.token_hex(6)}")
        if not skip_reason and ticks.waits(spec, busy=task.busy):
            task.waiting = context.run_id
            return Launch(context, decided, None, None, None, self.going(task))
        if skip_reason or self.job_backed(spec):
            return Launch(context, decided, skip_reason, None, None)
        started = asyncio.get_running_loop().create_future()
        execution = asyncio.create_task(self.perform(context, started))
        task.active[context.run_id] = execution
        # Cancelled before it began (its task deleted), the run never says when it started.
        execution.add_done_callback(lambda _: started.cancel())
        return Launch(context, decided, None, started, execution)

    def going(self, task: Task) -> tuple[asyncio.Future[Any], ...]:
        return tuple(run for run in task.active.values() if not run.done())

    def asked(
        self, task: Task, spec: models.StanTaskSpec, run_id: str, scheduled_at: datetime.datetime, message: str
    ) -> tuple[models.Run, tuple[asyncio.Future[Any], ...]]:
        """A run asked for outside the heap (now, or a backfilled tick) as the concurrency policy decides
        it, and the runs it waits for (BufferOne); ``message`` is a started run's."""
        now = self._clock()
        reason = ticks.request_refusal(spec, busy=task.busy, waiting=task.waiting is not None)
        behind = self.going(task) if not reason and ticks.waits(spec, busy=task.busy) else ()
        run = models.Run(
            runId=run_id,
            scheduledAt=scheduled_at,
            startedAt=None if behind else now,
            result=models.RunResult.SKIPPED if reason else models.RunResult.RUNNING,
            message=reason or (ticks.WAITING if behind else message),
            finishedAt=now if reason else None,
        )
        return run, behind

    def start(self, task: Task, context: RunContext, behind: Collection[asyncio.Future[Any]]) -> None:
        """Start a claimed run's action in the background, after the runs ``behind`` it (BufferOne)."""
        if behind:
            task.waiting = context.run_id
            self.follow(task, context, self.queued(task, context, behind))
        else:
            self.follow(task, context, self.perform(context))

    async def queued(self, task: Task, context: RunContext, behind: Collection[asyncio.Future[Any]]) -> Outcome:
        """A claimed run that waits (concurrencyPolicy: BufferOne): once the runs ``behind`` it ended, its
        start is recorded and its action performed."""
        if behind:
            await asyncio.wait(behind)
        async with task.lock:
            if task.waiting == context.run_id:
                task.waiting = None
            now = self._clock()
            runs = [
                run.but(startedAt=now, message="") if run.runId == context.run_id else run
                for run in task.status.recentRuns
            ]
            await self._keeper.write(
                task, {"recentRuns": [run.dumped() for run in runs], "lastRunAt": models.format_timestamp(now)}
            )
        await self.tell(
            task,
            context.run_id,
            "Fired",
            f"Run {context.run_id} for {models.format_timestamp(context.scheduled_at)} started after the run before "
            "it ended (concurrencyPolicy: BufferOne).",
        )
        return await self.perform(context)

    async def perform(self, context: RunContext, started: asyncio.Future[datetime.datetime] | None = None) -> Outcome:
        """Run the action; ``started`` learns the moment it began, which is what startedAt records.

        A run that begins yields once before its action's first step: in-process actions share the one
        event loop, and thousands due at one tick then all begin at it, back to back, before the work
        of any (which finishedAt shows) delays the next one's start."""
        if started is not None:
            started.set_result(self._clock())
            await asyncio.sleep(0)
        try:
            return await self._actions[context.spec.action](context)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # an action's own bug must not stop the scheduler
            log.exception("action %s of %s/%s raised", context.spec.action, context.namespace, context.name)
            return Outcome(models.RunResult.FAILED, f"{type(error).__name__}: {error}")

    def follow(self, task: Task, context: RunContext, execution: Awaitable[Outcome]) -> None:
        """Await a claimed run's outcome in the background and record it; ``task.active`` holds it meanwhile."""
        task.active[context.run_id] = self._supervisor.spawn(
            f"run {context.run_id} of {task.namespace}/{task.name}", self._complete(task, context, execution)
        )

    async def _complete(self, task: Task, context: RunContext, execution: Awaitable[Outcome]) -> None:
        try:
            outcome = await execution
        except asyncio.CancelledError:
            if self.job_backed(context.spec):
                await self._jobs.stop(task.namespace, jobs.job_name(task.name, context.scheduled_at.timestamp()))
            raise
        async with task.lock:
            await self.finish(task, context.run_id, outcome)
        if self.job_backed(context.spec):
            await self._jobs.prune(task.namespace, task.uid, context.spec.runHistoryLimit)

    async def finish(self, task: Task, run_id: str, outcome: Outcome) -> None:
        """Record how a run that status holds as running ended."""
        task.active.pop(run_id, None)
        runs = list(task.status.recentRuns)
        for index, run in enumerate(runs):
            if run.runId == run_id and run.result == models.RunResult.RUNNING:
                ended = runs[index] = concluded(run, outcome, self._clock())
                break
        else:
            return
        await self._keeper.write(task, {"recentRuns": [run.dumped() for run in runs], **ticks.outcome_times(ended)})
        self._metrics.run_recorded(task.namespace, task.name, outcome.result)
        await self._ended(task)
        await self.report(task, run_id, outcome, f"Run {run_id}: {outcome.message}")

    async def report(self, task: Task, run_id: str, outcome: Outcome, message: str) -> None:
        succeeded = outcome.result == models.RunResult.SUCCEEDED.value
        await self.tell(task, run_id, "Succeeded" if succeeded else "Failed", message)

    async def tell(self, task: Task, run_id: str, reason: str, message: str) -> None:
        """A run's Event, as the operator's runEvents wants it; failed and skipped runs are warnings."""
        if ticks.tells(self._config.runEvents, reason, task.status.recentRuns, run_id):
            await self._events.post(task.ref, reason, message, warning=reason in ("Failed", "Skipped"))

    async def replace(self, task: Task, run_ids: list[str]) -> None:
        for run_id in run_ids:
            task.active[run_id].cancel()
            await self.finish(
                task, run_id, Outcome(models.RunResult.FAILED, "replaced by a newer run (concurrencyPolicy: Replace)")
            )

    async def recover(self, task: Task) -> None:
        """Settle runs that an operator which is gone left running.

        A Job-backed run is followed again: its Job's name comes from the tick, so
        this creates it if the claim was written but the Job was not, and
        otherwise finds it. An in-process run may have done part of its work, so
        it is recorded as failed rather than run a second time; one that waited
        (BufferOne) and never started starts now.
        """
        if task.spec is None:
            return
        for run in task.status.recentRuns:
            if run.result != models.RunResult.RUNNING or run.runId in task.active:
                continue
            context = self.context(task, task.spec, run.scheduledAt, run.runId)
            if run.startedAt is None:
                self.follow(task, context, self.queued(task, context, ()))
            elif self.job_backed(task.spec):
                self.follow(task, context, self.perform(context))
            else:
                await self.finish(
                    task,
                    run.runId,
                    Outcome(models.RunResult.FAILED, "the operator stopped during this run; it is not run again"),
                )
