"""The timing structure: one heap of next ticks for every task the operator sees.

One coroutine sleeps until the earliest tick, instead of one sleeping
coroutine per task (kopf timers and daemons would also add finalizers). The
watch feeds the heap through ``observe``; a tick is fired by ``_fire``.

Exactly once, also across restarts: a run is recorded only by claiming its
tick, with a JSON patch that tests ``status.lastScheduledAt`` against the value
this operator last saw and replaces it with the tick. A claim that loses
(another operator, or a stale view) fails the test; its run is cancelled and
nothing of it is recorded. After a restart the stored ``lastScheduledAt`` says
which ticks were accounted for; the latest missed tick runs once if it is
within ``startingDeadlineSeconds`` and is recorded as skipped otherwise.

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
import contextlib
import dataclasses
import datetime
import heapq
import logging
import secrets
from collections.abc import Awaitable, Callable

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from stan_core import config, ids, kube, models, validation
from stan_core.index import Key, NamespacedIndex
from stan_operator import events, status, supervision, ticks
from stan_operator.actions import Action, Outcome, RunContext, jobs

UTC = datetime.UTC
MAX_SLEEP_SECONDS = 30.0
CLAIMS_IN_FLIGHT = 32
"""At a shared tick thousands of tasks are due at once; a few dozen claims in flight keep the API
server busy without a thousand requests timing out in its queue."""
log = logging.getLogger(__name__)


def _now() -> datetime.datetime:
    return datetime.datetime.now(UTC)


def _busy(task: Task) -> bool:
    """Whether a run of the task is still going (a finished one may wait in ``active`` for its claim)."""
    return any(not run.done() for run in task.active.values())


@dataclasses.dataclass(frozen=True)
class Launch:
    """A due tick as decided at its moment: skipped (with the reason), or its action started."""

    context: RunContext
    decided: datetime.datetime
    skip_reason: str | None
    started: asyncio.Future[datetime.datetime] | None
    execution: asyncio.Task[Outcome] | None


@dataclasses.dataclass
class Task:
    """What the operator knows of one StanTask: its spec, and the status it last wrote or saw."""

    namespace: str
    name: str
    uid: str
    generation: int
    created: datetime.datetime
    spec: models.StanTaskSpec | None
    status: models.StanTaskStatus
    next_tick: datetime.datetime | None = None
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    active: dict[str, asyncio.Task[None]] = dataclasses.field(default_factory=dict)
    requested: str | None = None

    @property
    def key(self) -> Key:
        return self.namespace, self.name

    @property
    def metadata(self) -> dict:
        return {"namespace": self.namespace, "name": self.name, "uid": self.uid}


class Scheduler:
    def __init__(
        self,
        api: client.ApiClient,
        configuration: config.OperatorConfig,
        actions: dict[str, Action],
        supervisor: supervision.Supervisor,
        leading: asyncio.Event | None = None,
        clock: Callable[[], datetime.datetime] = _now,
    ) -> None:
        """``leading``, when given, is set while this replica holds the lease; ticks fire only then."""
        self._api = api
        self._supervisor = supervisor
        self._leading = leading
        self._config = configuration
        self._actions = actions
        self._clock = clock
        self._tasks: NamespacedIndex[Task] = NamespacedIndex()
        self._heap: list[tuple[float, int, Key]] = []
        self._sequence = 0
        self._wakeup = asyncio.Event()
        self._claims = asyncio.Semaphore(CLAIMS_IN_FLIGHT)
        self._settled = False
        """Whether the runs that a previous operator left running were settled since this one began to lead;
        a loop restarted after failing to settle them tries again."""

    # The watch's side.

    async def observe(self, body: dict) -> None:
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
            )
            self._tasks.put(key, known)
            async with known.lock:
                await self._reconcile(known, body, first_sight=True)
        request = (metadata.get("annotations") or {}).get(models.RUN_REQUEST_ANNOTATION)
        if request and request not in (known.status.lastRunRequest, known.requested) and not self._standby:
            known.requested = request
            self._supervisor.spawn(f"run of {key[0]}/{key[1]} on request", self._run_on_request(known, request))

    @property
    def _standby(self) -> bool:
        """A replica that does not hold the Lease keeps its view current but writes nothing."""
        return self._leading is not None and not self._leading.is_set()

    def _follow_claims(self, task: Task, observed: dict) -> None:
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
            if tick == task.status.lastScheduledAt and self._standby:
                task.status = models.StanTaskStatus.model_validate(observed)
            return
        task.status = models.StanTaskStatus.model_validate(observed)
        if task.next_tick is not None and task.next_tick <= tick:
            task.next_tick = self._schedule(task.spec).after(tick)
            self._push(task)

    def forget(self, namespace: str, name: str) -> None:
        task = self._tasks.pop((namespace, name))
        if task is not None:
            for run in task.active.values():
                run.cancel()

    def _statuses(self, namespace: str) -> dict[str, models.StanTaskStatus]:
        return {name: task.status for name, task in self._tasks.in_namespace(namespace).items()}

    async def _reconcile(self, task: Task, body: dict, *, first_sight: bool) -> None:
        task.generation = body["metadata"].get("generation", 0)
        spec, errors = validation.guarded(validation.task_spec, body.get("spec"), self._config)
        was = task.status.status
        task.spec = spec
        if spec is None:
            task.next_tick = None
            message = validation.describe(errors)
            await self._write(
                task,
                {
                    "nextRunAt": None,
                    "observedGeneration": task.generation,
                    "conditions": status.ready(task.status.conditions, False, "InvalidSpec", message, task.generation),
                },
            )
            await self._announce(task, "InvalidSpec", message, warning=True)
            return
        now = self._clock()
        if spec.paused:
            task.next_tick = None
            await self._write(
                task,
                {
                    "status": "paused",
                    "nextRunAt": None,
                    "observedGeneration": task.generation,
                    "conditions": status.ready(
                        task.status.conditions, True, "Paused", "The task is paused.", task.generation
                    ),
                },
            )
            if was != "paused":
                await self._announce(task, "Paused", "The task is paused.")
            return
        patch: dict = {"status": "active", "observedGeneration": task.generation}
        accounted_until = ticks.baseline(task.status.lastScheduledAt, task.created, resumed=was == "paused", now=now)
        if accounted_until != task.status.lastScheduledAt:
            patch["lastScheduledAt"] = models.format_timestamp(accounted_until)
        schedule = self._schedule(spec)
        task.next_tick = (
            ticks.first_tick(schedule, accounted_until, now)
            if first_sight
            else ticks.next_after_change(schedule, accounted_until, now)
        )
        if first_sight and not self._standby:
            await self._recover(task)
        patch["nextRunAt"] = models.format_timestamp(task.next_tick)
        patch["conditions"] = status.ready(
            task.status.conditions, True, "Scheduled", "The task fires on its schedule.", task.generation
        )
        await self._write(task, patch)
        if was == "paused":
            await self._announce(task, "Resumed", f"The task is resumed; next run at {patch['nextRunAt']}.")
        self._push(task)

    def _schedule(self, spec: models.StanTaskSpec) -> ticks.Schedule:
        return ticks.Schedule.of(spec, self._config.allowSecondSchedules)

    # The timing loop.

    def _push(self, task: Task) -> None:
        assert task.next_tick is not None
        self._sequence += 1
        entry = (task.next_tick.timestamp(), self._sequence, task.key)
        heapq.heappush(self._heap, entry)
        if self._heap[0] is entry:
            self._wakeup.set()

    async def run(self, beat: supervision.Beat) -> None:
        """Sleep until the earliest tick (waking at least every ``MAX_SLEEP_SECONDS`` to show it is alive),
        fire everything due, repeat."""
        while True:
            beat()
            if self._leading is not None and not self._leading.is_set():
                await self._wait_for_lead(beat)
                self._settled = False
            if not self._settled:
                for task in list(self._tasks.values()):
                    async with task.lock:
                        await self._recover(task)
                self._settled = True
                for task in list(self._tasks.values()):
                    async with task.lock:
                        await self._recover(task)
            now = self._clock().timestamp()
            due: list[tuple[Task, datetime.datetime]] = []
            while self._heap and self._heap[0][0] <= now:
                moment, _, key = heapq.heappop(self._heap)
                task = self._tasks.get(key)
                if task is not None and task.next_tick is not None and task.next_tick.timestamp() == moment:
                    task.next_tick = None
                    due.append((task, datetime.datetime.fromtimestamp(moment, UTC)))
            # Every due action is started before the claim of any is prepared: the event loop then runs
            # the actions' first steps back to back, and the last of thousands starts nearly as soon as
            # the first.
            launches = [(task, task.generation, tick, self._launch(task, tick)) for task, tick in due]
            for task, generation, tick, launch in launches:
                if launch is not None:
                    self._supervisor.spawn(
                        f"tick of {task.namespace}/{task.name}", self._fire(task, generation, tick, launch)
                    )
            self._wakeup.clear()
            timeout = (
                min(self._heap[0][0] - self._clock().timestamp(), MAX_SLEEP_SECONDS)
                if self._heap
                else MAX_SLEEP_SECONDS
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    async def _wait_for_lead(self, beat: supervision.Beat) -> None:
        assert self._leading is not None
        while not self._leading.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._leading.wait(), MAX_SLEEP_SECONDS)
            beat()

    async def _recover(self, task: Task) -> None:
        """Settle runs that an operator which is gone left running.

        A Job-backed run is followed again: its Job's name comes from the tick, so
        this creates it if the claim was written but the Job was not, and
        otherwise finds it. An in-process run may have done part of its work, so
        it is recorded as failed rather than run a second time.
        """
        if task.spec is None:
            return
        for run in task.status.recentRuns:
            if run.result != models.RunResult.RUNNING or run.runId in task.active:
                continue
            if task.spec.action in self._config.jobActions:
                context = self._context(task, task.spec, run.scheduledAt, run.runId)
                self._follow(task, context, self._perform(context))
            else:
                await self._finish(
                    task,
                    run.runId,
                    Outcome(models.RunResult.FAILED, "the operator stopped during this run; it is not run again"),
                )

    def _context(
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

    def _launch(self, task: Task, tick: datetime.datetime) -> Launch | None:
        """Decide whether a due tick runs, and if so start its in-process action; ``_fire`` claims and
        records it. A Job is an effect outside the operator, so a Job-backed action starts only once
        its claim is stored."""
        if not self._current(task, task.generation):
            return None
        assert task.spec is not None
        decided = self._clock()
        skip_reason = ticks.skip_reason(task.spec, tick, decided, busy=_busy(task))
        context = self._context(task, task.spec, tick, f"run_{secrets.token_hex(6)}")
        if skip_reason or task.spec.action in self._config.jobActions:
            return Launch(context, decided, skip_reason, None, None)
        started = asyncio.get_running_loop().create_future()
        execution = task.active[context.run_id] = asyncio.create_task(self._perform(context, started))
        # Cancelled before it began (its task deleted), the run never says when it started.
        execution.add_done_callback(lambda _: started.cancel())
        return Launch(context, decided, None, started, execution)

    async def _fire(self, task: Task, generation: int, tick: datetime.datetime, launch: Launch) -> None:
        context, execution, skip_reason = launch.context, launch.execution, launch.skip_reason
        spec = context.spec
        now = launch.decided if launch.started is None else await launch.started
        run = models.Run(
            runId=context.run_id,
            scheduledAt=tick,
            startedAt=now,
            result=models.RunResult.SKIPPED if skip_reason else models.RunResult.RUNNING,
            message=skip_reason or "",
            finishedAt=now if skip_reason else None,
        )
        following = ticks.following(self._schedule(spec), tick, now, spec.startingDeadlineSeconds)
        # The next tick enters the heap now, so that a queue of claims longer than the schedule's interval
        # delays records, not starts; but only while no earlier claim of this task waits, which bounds the
        # claims queued per task at two.
        early = not task.lock.locked()
        if early:
            task.next_tick = following
            self._push(task)
        async with task.lock, self._claims:
            ended = execution is not None and execution.done() and not execution.cancelled()
            outcome = execution.result() if ended else None
            if outcome is not None:
                run = run.model_copy(
                    update={"result": outcome.result, "message": outcome.message, "finishedAt": self._clock()}
                )
            elif execution is None and not skip_reason:
                run = run.model_copy(update={"startedAt": self._clock()})
            # A run that has started is recorded even if the task was paused or changed meanwhile; the
            # nextRunAt that the pause or change wrote stands.
            upcoming = following if self._current(task, generation) else task.status.nextRunAt
            failed = False
            try:
                claimed = (
                    self._tasks.get(task.key) is task
                    and not self._standby
                    and await self._claim(task, tick, run, upcoming)
                )
            except Exception as error:
                if kube.transient(error):
                    log.warning(
                        "tick %s of %s/%s missed: the API server was unreachable until past the deadline",
                        tick,
                        task.namespace,
                        task.name,
                    )
                else:
                    log.exception("claiming tick %s of %s/%s failed", tick, task.namespace, task.name)
                claimed, failed = False, True
            if (failed or not early) and self._current(task, generation):
                task.next_tick = self._schedule(spec).after(self._clock()) if failed else following
                self._push(task)
            if not claimed:
                if execution is not None:
                    task.active.pop(run.runId, None)
                    execution.cancel()
                return
            if skip_reason is None:
                await self._replace(task, ticks.replaced(spec, task.status.recentRuns, tick, set(task.active)))
                if outcome is not None:
                    task.active.pop(run.runId, None)
                else:
                    self._follow(task, context, execution or self._perform(context))
        if skip_reason:
            await events.post(
                self._api,
                models.STAN_TASK,
                task.metadata,
                "Skipped",
                f"Tick {models.format_timestamp(tick)} skipped: {skip_reason}",
                warning=True,
            )
            return
        assert run.startedAt is not None
        fired = (
            f"Run {run.runId} for tick {models.format_timestamp(tick)} started "
            f"({(run.startedAt - tick).total_seconds():.3f}s after the tick)"
        )
        if outcome is not None:
            await self._report(task, outcome, f"{fired}: {outcome.message}")
            return
        await events.post(self._api, models.STAN_TASK, task.metadata, "Fired", f"{fired}.")

    def _current(self, task: Task, generation: int) -> bool:
        """Whether a tick taken from the heap still stands: the task neither gone, nor changed, nor paused."""
        return (
            self._tasks.get(task.key) is task
            and task.generation == generation
            and task.spec is not None
            and not task.spec.paused
        )

    async def _run_on_request(self, task: Task, request: str) -> None:
        """A run now, asked for through the annotation: recorded like a tick's, answered by lastRunRequest."""
        async with task.lock:
            spec = task.spec
            if self._tasks.get(task.key) is not task or spec is None or task.status.lastRunRequest == request:
                return
            now = self._clock()
            reason = ticks.request_refusal(spec, busy=_busy(task))
            run = models.Run(
                runId=f"run_{request[:12]}",
                scheduledAt=now,
                startedAt=now,
                result=models.RunResult.SKIPPED if reason else models.RunResult.RUNNING,
                message=reason or "run on request",
                finishedAt=now if reason else None,
            )
            runs = ticks.bounded([run, *task.status.recentRuns], spec.runHistoryLimit)
            dumped = [item.model_dump(mode="json", by_alias=True) for item in runs]
            patch = {"lastRunRequest": request, "lastRun": dumped[0], "recentRuns": dumped}
            if not reason:
                patch["lastRunAt"] = models.format_timestamp(now)
            await self._write(task, patch)
            if reason:
                return
            await events.post(
                self._api, models.STAN_TASK, task.metadata, "Fired", f"Run {run.runId} started on request."
            )
            context = self._context(task, spec, run.scheduledAt, run.runId)
            self._follow(task, context, self._perform(context))

    async def _claim(
        self, task: Task, tick: datetime.datetime, run: models.Run, following: datetime.datetime | None
    ) -> bool:
        """Take the tick with a compare-and-swap on lastScheduledAt; False when another claim won."""
        runs = ticks.bounded([run, *task.status.recentRuns], task.spec.runHistoryLimit if task.spec else 1)
        expected = models.format_timestamp(task.status.lastScheduledAt) if task.status.lastScheduledAt else None
        values = {
            "lastScheduledAt": models.format_timestamp(tick),
            "nextRunAt": models.format_timestamp(following) if following else None,
            "lastRun": run.model_dump(mode="json", by_alias=True),
            "recentRuns": [item.model_dump(mode="json", by_alias=True) for item in runs],
        }
        if run.result != models.RunResult.SKIPPED.value:
            values["lastRunAt"] = models.format_timestamp(run.startedAt) if run.startedAt else None
        patch = [{"op": "test", "path": "/status/lastScheduledAt", "value": expected}]
        patch += [{"op": "add", "path": f"/status/{field}", "value": value} for field, value in values.items()]
        deadline = tick + datetime.timedelta(seconds=task.spec.startingDeadlineSeconds if task.spec else 0)
        try:
            stored = await kube.patch_status(
                self._api,
                models.STAN_TASK,
                task.namespace,
                task.name,
                patch,
                give_up_after=max(1.0, (deadline - self._clock()).total_seconds()),
            )
        except ApiException as error:
            if error.status in (404, 409, 422):
                log.info("tick %s of %s/%s not claimed (%s); resyncing", tick, task.namespace, task.name, error.reason)
                await self._resync(task)
                return False
            raise
        task.status = models.StanTaskStatus.model_validate(stored.get("status") or {})
        return True

    async def _resync(self, task: Task) -> None:
        """Forget what this operator believed of the task and read it afresh."""
        self._tasks.pop(task.key)
        try:
            body = await kube.custom_objects(self._api).get_namespaced_custom_object(
                models.GROUP, models.VERSION, task.namespace, models.STAN_TASK.plural, task.name
            )
        except ApiException as error:
            if error.status == 404:
                return
            raise
        self._supervisor.spawn(f"resync of {task.namespace}/{task.name}", self.observe(body))

    async def _replace(self, task: Task, run_ids: list[str]) -> None:
        for run_id in run_ids:
            task.active[run_id].cancel()
            await self._finish(
                task, run_id, Outcome(models.RunResult.FAILED, "replaced by a newer run (concurrencyPolicy: Replace)")
            )

    async def _perform(self, context: RunContext, started: asyncio.Future[datetime.datetime] | None = None) -> Outcome:
        """Run the action; ``started`` learns the moment it began, which is what startedAt records."""
        if started is not None:
            started.set_result(self._clock())
        try:
            return await self._actions[context.spec.action](context)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # an action's own bug must not stop the scheduler
            log.exception("action %s of %s/%s raised", context.spec.action, context.namespace, context.name)
            return Outcome(models.RunResult.FAILED, f"{type(error).__name__}: {error}")

    def _follow(self, task: Task, context: RunContext, execution: Awaitable[Outcome]) -> None:
        """Await a claimed run's outcome in the background and record it; ``task.active`` holds it meanwhile."""
        task.active[context.run_id] = self._supervisor.spawn(
            f"run {context.run_id} of {task.namespace}/{task.name}", self._complete(task, context, execution)
        )

    async def _complete(self, task: Task, context: RunContext, execution: Awaitable[Outcome]) -> None:
        try:
            outcome = await execution
        except asyncio.CancelledError:
            if context.spec.action in self._config.jobActions:
                await jobs.stop(self._api, task.namespace, jobs.job_name(task.name, context.scheduled_at.timestamp()))
            raise
        async with task.lock:
            await self._finish(task, context.run_id, outcome)
        if context.spec.action in self._config.jobActions:
            await jobs.prune(self._api, task.namespace, task.uid, context.spec.runHistoryLimit)

    async def _finish(self, task: Task, run_id: str, outcome: Outcome) -> None:
        task.active.pop(run_id, None)
        runs = list(task.status.recentRuns)
        for index, run in enumerate(runs):
            if run.runId == run_id and run.result == models.RunResult.RUNNING:
                runs[index] = run.model_copy(
                    update={"result": outcome.result, "message": outcome.message, "finishedAt": self._clock()}
                )
                break
        else:
            return
        dumped = [run.model_dump(mode="json", by_alias=True) for run in runs]
        await self._write(task, {"recentRuns": dumped, "lastRun": dumped[0]})
        await self._report(task, outcome, f"Run {run_id}: {outcome.message}")

    async def _report(self, task: Task, outcome: Outcome, message: str) -> None:
        succeeded = outcome.result == models.RunResult.SUCCEEDED.value
        await events.post(
            self._api,
            models.STAN_TASK,
            task.metadata,
            "Succeeded" if succeeded else "Failed",
            message,
            warning=not succeeded,
        )

    async def _announce(self, task: Task, reason: str, message: str, *, warning: bool = False) -> None:
        if not self._standby:
            await events.post(self._api, models.STAN_TASK, task.metadata, reason, message, warning=warning)

    async def _write(self, task: Task, patch: dict) -> None:
        if self._standby:
            return
        stored = await status.write(self._api, models.STAN_TASK, task.namespace, task.name, task.status, patch)
        if stored is None:
            self.forget(task.namespace, task.name)
        else:
            task.status = stored
