"""The task scheduler: every task's ticks fired from one heap, each exactly once.

The watch feeds the heap (``tick_heap``) through ``observe``; ``fire_due``
fires what is due, by the rules of ``ticks``. A run is recorded only by
claiming its tick (``claims``): a compare-and-swap on
``status.lastScheduledAt``, so that a tick runs once also across restarts and
replicas. After a restart the stored ``lastScheduledAt`` says which ticks were
accounted for; the latest missed tick runs once if it is within
``startingDeadlineSeconds`` and is recorded as skipped otherwise, and runs
that the operator which is gone left running are settled (``runs``). A
replica that does not hold the Lease stands by (``watched``): it keeps its heap
current from the claims others write, and fires once it leads.

Every effect on the world goes through ``effects``, every reading of the time
through the injected clock.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Mapping

from kubernetes_asyncio import client

from stan_core import config, ledger, models, schedule, validation
from stan_core.index import NamespacedIndex
from stan_core.kube import Body
from stan_operator import notifications, status, supervision, ticks
from stan_operator.actions import Action
from stan_operator.backfills import Backfills
from stan_operator.claims import Claims
from stan_operator.clock import Clock, system_clock
from stan_operator.effects import Patch, TaskEffects, Unreachable
from stan_operator.metrics import Metrics, TaskState
from stan_operator.runs import Launch, Runs, concluded
from stan_operator.task_state import Task
from stan_operator.tick_heap import TickHeap
from stan_operator.watched import Keeper

MAX_SLEEP_SECONDS = 30.0
FINISHED = "Finished"
"""The condition of a task that fires no more: its maxRuns used up or its endAt passed."""
log = logging.getLogger(__name__)


def _finished(observed: models.StanTaskStatus) -> bool:
    return any(c.type == FINISHED and c.status == "True" for c in observed.conditions)


class Scheduler:
    def __init__(
        self,
        api: client.ApiClient,
        configuration: config.OperatorConfig,
        actions: Mapping[str, Action],
        supervisor: supervision.Supervisor,
        effects: TaskEffects,
        leading: asyncio.Event | None = None,
        clock: Clock = system_clock,
        metrics: Metrics | None = None,
    ) -> None:
        """``leading``, when given, is set while this replica holds the lease; ticks fire only then."""
        self._config = configuration
        self._supervisor = supervisor
        self._effects = effects
        self._clock = clock
        self._tasks: NamespacedIndex[Task] = NamespacedIndex()
        self._heap = TickHeap()
        self._keeper = Keeper(
            effects.status, effects.events, leading, lambda task: self.forget(task.namespace, task.name)
        )
        self._claims = Claims(effects.status, clock)
        self._metrics = metrics or Metrics()
        self._notifier: notifications.Notifier[Task] = notifications.Notifier(
            models.STAN_TASK,
            self._keeper,
            effects.events,
            effects.outbox,
            configuration.notificationAllowlist,
            supervisor,
            clock,
            self._metrics,
            targets=lambda task: task.spec.notify if task.spec is not None else [],
            decide=self._notices,
            current=lambda task: self._tasks.get(task.key) is task,
        )
        self._runs = Runs(
            api,
            configuration,
            actions,
            supervisor,
            self._keeper,
            effects.events,
            effects.jobs,
            clock,
            self._statuses,
            self._metrics,
            self._ended,
        )
        self._backfills = Backfills(
            configuration,
            self._keeper,
            effects.status,
            effects.events,
            self._runs,
            supervisor,
            clock,
            lambda task: self._current(task, task.generation),
        )
        self._settled = False
        """Whether the runs that a previous operator left running were settled since this one began to lead;
        a loop restarted after failing to settle them tries again."""

    # The watch's side.

    async def observe(self, body: Body) -> None:
        """Take in an object from the watch; a change of spec (generation) reschedules it."""
        metadata = body["metadata"]
        key = (metadata["namespace"], metadata["name"])
        known = self._tasks.get(key)
        if known is not None and known.uid == metadata["uid"] and known.generation == metadata.get("generation"):
            self._follow_claims(known, body.get("status") or {})
        elif known is not None and known.uid == metadata["uid"]:
            async with known.lock:
                await self._reconcile(known, body, first_sight=False)
        else:
            known = Task(
                namespace=key[0],
                name=key[1],
                uid=metadata["uid"],
                generation=metadata.get("generation", 0),
                created=datetime.datetime.fromisoformat(metadata["creationTimestamp"]),
                spec=None,
                status=models.StanTaskStatus.model_validate(body.get("status") or {}),
                version=metadata.get("resourceVersion"),
            )
            self._tasks.put(key, known)
            self._metrics.task_seen(*key)
            async with known.lock:
                await self._reconcile(known, body, first_sight=True)
        request = self._keeper.new_request(known, metadata, known.status.lastRunRequest)
        if request is not None:
            self._supervisor.spawn(f"run of {key[0]}/{key[1]} on request", self._run_on_request(known, request))
        self._backfills.take_up(known, metadata)

    def _follow_claims(self, task: Task, observed: Body) -> None:
        """Adopt ticks that another replica claimed, so that a standby's heap stays current, and on a
        standby the results recorded for them too, which its audits read once it leads.

        Claims only move forward, so an older watch event never rolls this view back. A replica
        that leads keeps its own writes instead: the watch may deliver its claim after its result.
        """
        claimed = observed.get("lastScheduledAt")
        if not claimed or task.spec is None:
            return
        tick = datetime.datetime.fromisoformat(claimed)
        if task.status.lastScheduledAt is not None and tick <= task.status.lastScheduledAt:
            if tick == task.status.lastScheduledAt and self._keeper.standby:
                task.status = models.StanTaskStatus.model_validate(observed)
            return
        task.status = models.StanTaskStatus.model_validate(observed)
        if task.next_tick is not None and task.next_tick <= tick:
            self._reschedule(task, None if task.status.remainingRuns == 0 else self._plan(task).after(tick))

    def forget(self, namespace: str, name: str) -> None:
        task = self._tasks.pop((namespace, name))
        if task is not None:
            for run in task.active.values():
                run.cancel()

    def _notices(self, task: Task, now: datetime.datetime) -> notifications.Decision | None:
        if task.spec is None:
            return None
        plan = self._plan(task)

        def due_after(moment: datetime.datetime) -> datetime.datetime | None:
            tick = plan.after(moment)
            return None if tick is None else plan.due(tick)

        return notifications.decide_for_task(task.uid, task.spec, task.status, task.created, now, due_after)

    async def sweep_notifications(self) -> None:
        await self._notifier.sweep(self._tasks.values())

    def state(self) -> TaskState:
        """What a scrape shows of the tasks."""
        tasks = list(self._tasks.values())
        streaks: dict[str, int] = {}
        for task in tasks:
            streaks[task.namespace] = max(streaks.get(task.namespace, 0), ticks.failure_streak(task.status.recentRuns))
        return TaskState(
            known=len(tasks),
            scheduled=sum(task.next_tick is not None for task in tasks),
            heap_depth=len(self._heap),
            failure_streaks=streaks,
        )

    def _statuses(self, namespace: str) -> dict[str, models.StanTaskStatus]:
        return {name: task.status for name, task in self._tasks.in_namespace(namespace).items()}

    async def _reconcile(self, task: Task, body: Body, *, first_sight: bool) -> None:
        task.generation = body["metadata"].get("generation", 0)
        spec, errors = validation.guarded(validation.task_spec, body.get("spec"), self._config)
        was = task.status.status
        previous = task.spec if not first_sight else spec
        task.spec = spec
        if spec is None:
            task.next_tick = task.next_due = None
            message = validation.describe(errors)
            await self._keeper.write(
                task,
                {
                    "nextRunAt": None,
                    "observedGeneration": task.generation,
                    "conditions": status.ready(task.status.conditions, False, "InvalidSpec", message, task.generation),
                },
            )
            await self._keeper.announce(task, "InvalidSpec", message, warning=True)
            return
        now = self._clock()
        if spec.paused:
            task.next_tick = task.next_due = None
            message = f"The task is paused: {spec.pauseNote}" if spec.pauseNote else "The task is paused."
            paused: Patch = {
                "status": "paused",
                "nextRunAt": None,
                "pauseNote": spec.pauseNote,
                "observedGeneration": task.generation,
                "conditions": status.ready(task.status.conditions, True, "Paused", message, task.generation),
            }
            if was != "paused":
                paused["pausedAt"] = models.format_timestamp(now)
            await self._keeper.write(task, paused)
            if was != "paused" or previous is None or previous.pauseNote != spec.pauseNote:
                await self._keeper.announce(task, "Paused", message)
            return
        finished_before = _finished(task.status)
        patch: Patch = {"status": "active", "observedGeneration": task.generation, "pausedAt": None, "pauseNote": None}
        if was == "paused":
            patch["resumedAt"] = models.format_timestamp(now)
        accounted_until = ticks.baseline(task.status.lastScheduledAt, task.created, resumed=was == "paused", now=now)
        if accounted_until != task.status.lastScheduledAt:
            patch["lastScheduledAt"] = models.format_timestamp(accounted_until)
        remaining = ticks.remaining_runs(spec, task.status.remainingRuns, previous.maxRuns if previous else None)
        patch["remainingRuns"] = remaining
        if "ranTicks" not in (body.get("status") or {}):
            # A task from before the ledger of ticks that ran: its earlier runs are unknown to the ledger, so
            # no backfill reaches them.
            patch["ranTicks"] = []
            if task.status.lastScheduledAt is not None:
                patch["ranTicksSince"] = models.format_timestamp(task.status.lastScheduledAt)
        plan = self._plan(task)
        tick = None
        if remaining != 0:
            tick = (
                ticks.first_tick(plan, accounted_until, now)
                if first_sight
                else ticks.next_after_change(plan, accounted_until, now)
            )
        if first_sight and not self._keeper.standby:
            await self._runs.recover(task)
        self._reschedule(task, tick)
        patch["nextRunAt"] = models.format_timestamp(task.next_due) if task.next_due else None
        finish = ticks.finish_reason(spec, remaining, tick)
        patch["conditions"] = self._conditions(task, finish)
        await self._keeper.write(task, patch)
        if was == "paused":
            await self._keeper.announce(
                task, "Resumed", f"The task is resumed; next run at {patch['nextRunAt'] or 'none: it is finished'}."
            )
        if finish is not None and not finished_before:
            await self._keeper.announce(task, "Finished", finish)

    def _plan(self, task: Task, spec: models.StanTaskSpec | None = None) -> schedule.Schedule:
        """The task's schedule as ``spec`` (by default its current one) says it."""
        spec = spec or task.spec
        assert spec is not None
        return schedule.Schedule.of(spec, self._config.allowSecondSchedules, task.uid)

    def _reschedule(self, task: Task, tick: datetime.datetime | None) -> None:
        """Make ``tick`` the task's next, entered in the heap at its due time; None: the task has none."""
        task.next_tick = tick
        task.next_due = None if tick is None else self._plan(task).due(tick)
        if task.next_due is not None:
            self._heap.push(task.key, task.next_due)

    def _conditions(self, task: Task, finish: str | None) -> list[Body]:
        """Ready, and while the task fires no more (maxRuns used up, endAt passed) Finished with the reason;
        a task still firing has no Finished condition, so one that an edit revives loses it."""
        if finish is None:
            return status.ready(
                task.status.conditions, True, "Scheduled", "The task fires on its schedule.", task.generation
            )
        return [
            *status.ready(task.status.conditions, True, "Finished", finish, task.generation),
            status.condition(task.status.conditions, FINISHED, True, "Finished", finish, task.generation),
        ]

    # The timing loop.

    async def run(self, beat: supervision.Beat) -> None:
        """Sleep until the earliest tick (waking at least every ``MAX_SLEEP_SECONDS`` to show it is alive),
        fire everything due, repeat."""
        while True:
            beat()
            if self._keeper.standby:
                await self._keeper.until_leading(beat)
                self._settled = False
            if not self._settled:
                await self.settle()
                self._settled = True
            self.fire_due()
            await self._heap.sleep(self._clock(), MAX_SLEEP_SECONDS)

    async def settle(self) -> None:
        """Settle the runs that an operator which is gone left running, once this replica leads: as a
        standby it saw its tasks without touching them."""
        for task in list(self._tasks.values()):
            async with task.lock:
                await self._runs.recover(task)

    def fire_due(self) -> None:
        """Fire every tick due by the clock; each is claimed and recorded in the background."""
        due: list[tuple[Task, datetime.datetime, datetime.datetime]] = []
        for key, tick in self._heap.pop_due(self._clock()):
            task = self._tasks.get(key)
            if (
                task is not None
                and task.next_tick is not None
                and task.next_due is not None
                and task.next_due.timestamp() == tick.timestamp()
            ):
                due.append((task, task.next_tick, task.next_due))
                task.next_tick = task.next_due = None
        # Every due action is started before the claim of any is prepared: the event loop then runs
        # the actions' first steps back to back, and the last of thousands starts nearly as soon as
        # the first.
        launches = [(task, task.generation, tick, self._launch(task, tick, at)) for task, tick, at in due]
        for task, generation, tick, launch in launches:
            if launch is not None:
                self._supervisor.spawn(
                    f"tick of {task.namespace}/{task.name}", self._fire(task, generation, tick, launch)
                )

    def _launch(self, task: Task, tick: datetime.datetime, due: datetime.datetime) -> Launch | None:
        if not self._current(task, task.generation):
            return None
        assert task.spec is not None
        return self._runs.launch(task, task.spec, tick, due)

    async def _fire(self, task: Task, generation: int, tick: datetime.datetime, launch: Launch) -> None:
        """Claim a launched tick and record its run; a run whose claim is lost is cancelled."""
        context, execution, skip_reason = launch.context, launch.execution, launch.skip_reason
        spec = context.spec
        if launch.started is None:
            now = launch.decided
        else:
            now = await launch.started
            # The run's first step comes before its claim: an action that ends in it is recorded in the claim.
            await asyncio.sleep(0)
        run = models.Run(
            runId=context.run_id,
            scheduledAt=tick,
            startedAt=None if launch.behind else now,
            result=models.RunResult.SKIPPED if skip_reason else models.RunResult.RUNNING,
            message=skip_reason or (ticks.WAITING if launch.behind else ""),
            finishedAt=now if skip_reason else None,
        )
        plan = self._plan(task, spec)
        due = plan.due(tick)
        deadline = due + datetime.timedelta(seconds=spec.startingDeadlineSeconds)
        following = ticks.following(plan, tick, now, spec.startingDeadlineSeconds)
        # The next tick enters the heap now, so that a queue of claims longer than the schedule's interval
        # delays records, not starts; but only while no earlier claim of this task waits, which bounds the
        # claims queued per task at two. A task paused or changed since its tick was launched has its next
        # tick from that change.
        early = not task.lock.locked()
        if early and self._current(task, generation):
            self._reschedule(task, following)
        async with task.lock, self._claims.in_flight:
            ended = execution is not None and execution.done() and not execution.cancelled()
            outcome = execution.result() if execution is not None and ended else None
            if outcome is not None:
                run = concluded(run, outcome, self._clock())
            elif execution is None and not skip_reason and not launch.behind:
                run = run.but(startedAt=self._clock())
            # A run that has started is recorded even if the task was paused or changed meanwhile; the
            # nextRunAt that the pause or change wrote stands.
            # Counted under the lock, from the status that the task's previous claim left.
            remaining = ticks.counted(task.status.remainingRuns, run)
            if remaining == 0:
                following = None
            current = self._current(task, generation)
            upcoming = (plan.due(following) if following else None) if current else task.status.nextRunAt
            failed = False
            try:
                claimed = (
                    self._tasks.get(task.key) is task
                    and not self._keeper.standby
                    and await self._claim(task, spec, tick, run, upcoming, remaining, deadline)
                )
            except Unreachable:
                self._metrics.tick_missed(task.namespace, task.name)
                log.warning(
                    "tick %s of %s/%s missed: the API server was unreachable until past the deadline",
                    tick,
                    task.namespace,
                    task.name,
                )
                claimed, failed = False, True
            except Exception:
                log.exception("claiming tick %s of %s/%s failed", tick, task.namespace, task.name)
                claimed, failed = False, True
            if (failed or not early or following is None) and self._current(task, generation):
                self._reschedule(task, plan.after(self._clock()) if failed else following)
            if not claimed:
                if execution is not None:
                    task.active.pop(run.runId, None)
                    execution.cancel()
                if task.waiting == run.runId:
                    task.waiting = None
                return
            self._count(task, due, run, launch.decided)
            finish = ticks.finish_reason(spec, remaining, following) if current else None
            if finish is not None:
                await self._keeper.write(task, {"conditions": self._conditions(task, finish)})
            if run.result != models.RunResult.RUNNING.value:
                await self._ended(task)
            if skip_reason is None:
                await self._runs.replace(task, ticks.replaced(spec, task.status.recentRuns, tick, set(task.active)))
                if outcome is not None:
                    task.active.pop(run.runId, None)
                elif execution is not None:
                    self._runs.follow(task, context, execution)
                else:
                    self._runs.start(task, context, launch.behind)
        if finish is not None:
            await self._effects.events.post(task.ref, "Finished", finish)
        if skip_reason:
            await self._runs.tell(
                task, run.runId, "Skipped", f"Tick {models.format_timestamp(tick)} skipped: {skip_reason}"
            )
            return
        if run.startedAt is None:
            await self._runs.tell(
                task, run.runId, "Waiting", f"Run {run.runId} for tick {models.format_timestamp(tick)} {ticks.WAITING}."
            )
            return
        fired = (
            f"Run {run.runId} for tick {models.format_timestamp(tick)} started "
            f"({(run.startedAt - tick).total_seconds():.3f}s after the tick)"
        )
        if outcome is not None:
            await self._runs.report(task, run.runId, outcome, f"{fired}: {outcome.message}")
            return
        await self._runs.tell(task, run.runId, "Fired", f"{fired}.")

    def _count(self, task: Task, due: datetime.datetime, run: models.Run, decided: datetime.datetime) -> None:
        """A claimed tick in the metrics: skipped (and missed, past its deadline), or started (and ended);
        lateness counts from the tick's due time, so that jitter, which is asked for, is not latency."""
        assert task.spec is not None
        if run.result == models.RunResult.SKIPPED.value:
            self._metrics.run_recorded(task.namespace, task.name, run.result)
            if ticks.past_deadline(due, decided, task.spec.startingDeadlineSeconds):
                self._metrics.tick_missed(task.namespace, task.name)
            return
        if run.startedAt is None:  # waiting (BufferOne): its wait is asked for, not lateness
            return
        self._metrics.run_started(task.namespace, task.name, (run.startedAt - due).total_seconds())
        if run.result != models.RunResult.RUNNING.value:
            self._metrics.run_recorded(task.namespace, task.name, run.result)

    async def _ended(self, task: Task) -> None:
        """After a run is recorded as ended, under the task's lock: notify what changed, and pause the task
        once pauseAfterFailures runs failed in a row, taking the paused spec in at once so that no further
        tick fires meanwhile."""
        await self._notifier.reconcile(task)
        note = ticks.pause_for_failures(task.spec, task.status) if task.spec is not None else None
        if note is None:
            return
        body = await self._effects.status.pause(task.namespace, task.name, note)
        if body is not None and body["metadata"]["uid"] == task.uid:
            await self._reconcile(task, body, first_sight=False)

    def _current(self, task: Task, generation: int) -> bool:
        """Whether a tick taken from the heap still stands: the task neither gone, nor changed, nor paused."""
        return (
            self._tasks.get(task.key) is task
            and task.generation == generation
            and task.spec is not None
            and not task.spec.paused
        )

    async def _claim(
        self,
        task: Task,
        spec: models.StanTaskSpec,
        tick: datetime.datetime,
        run: models.Run,
        following: datetime.datetime | None,
        remaining: int | None,
        deadline: datetime.datetime,
    ) -> bool:
        """Take the tick of ``spec``'s schedule, waiting for the API server until ``deadline``; when another
        claim won, forget what this operator believed of the task and read it afresh."""
        recorded = (
            {}
            if run.result == models.RunResult.SKIPPED.value
            else ledger.recorded(task.status, spec, tick, self._config.allowSecondSchedules)
        )
        if await self._claims.take(
            task, tick, run, following, remaining=remaining, deadline=deadline, recorded=recorded
        ):
            return True
        self._metrics.claims_lost.inc()
        self._tasks.pop(task.key)
        body = await self._effects.status.read(task.namespace, task.name)
        if body is not None:
            self._supervisor.spawn(f"resync of {task.namespace}/{task.name}", self.observe(body))
        return False

    async def _run_on_request(self, task: Task, request: str) -> None:
        """A run now, asked for through the annotation: recorded like a tick's, answered by lastRunRequest."""
        async with task.lock:
            spec = task.spec
            if self._tasks.get(task.key) is not task or spec is None or task.status.lastRunRequest == request:
                return
            run, behind = self._runs.asked(task, spec, f"run_{request[:12]}", self._clock(), "run on request")
            reason = run.message if run.result == models.RunResult.SKIPPED.value else None
            runs = ticks.bounded([run, *task.status.recentRuns], spec.runHistoryLimit)
            patch: Patch = {"lastRunRequest": request, "recentRuns": [item.dumped() for item in runs]}
            if not reason and not behind:
                patch["lastRunAt"] = models.format_timestamp(run.scheduledAt)
            await self._keeper.write(task, patch)
            if reason:
                return
            if not behind:
                await self._runs.tell(task, run.runId, "Fired", f"Run {run.runId} started on request.")
            self._runs.start(task, self._runs.context(task, spec, run.scheduledAt, run.runId), behind)
