"""The timing structure: one heap of next ticks for every task the operator sees.

One coroutine sleeps until the earliest tick, instead of one sleeping
coroutine per task (kopf timers and daemons would also add finalizers). The
watch feeds the heap through ``observe``; a tick is fired by ``_fire``.

Exactly once, also across restarts: before a run starts, its tick is claimed
with a JSON patch that tests ``status.lastScheduledAt`` against the value this
operator last saw and replaces it with the tick. A claim that loses (another
operator, or a stale view) fails the test and runs nothing. After a restart
the stored ``lastScheduledAt`` says which ticks were accounted for; the latest
missed tick runs once if it is within ``startingDeadlineSeconds`` and is
recorded as skipped otherwise.
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime
import heapq
import logging
import secrets
import time
from collections.abc import Callable

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from stan_operator import config, cron, events, ids, kube, models, status, validation
from stan_operator.actions import Action, Outcome, RunContext, jobs

UTC = datetime.timezone.utc
CLAIMS_IN_FLIGHT = 32
"""At a shared tick thousands of tasks are due at once; claiming a few dozen at a time keeps each
claim quick and makes a run's startedAt say when its turn really came."""
log = logging.getLogger(__name__)
Key = tuple[str, str]


def _now() -> datetime.datetime:
    return datetime.datetime.now(UTC)


def _bounded(runs: list[models.Run], limit: int) -> list[models.Run]:
    """The newest ``limit`` runs, plus older ones still running, whose results are yet to be written."""
    return runs[:limit] + [run for run in runs[limit:] if run.result == models.RunResult.RUNNING]


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
    def __init__(self, api: client.ApiClient, configuration: config.OperatorConfig, actions: dict[str, Action],
                 leading: asyncio.Event | None = None, clock: Callable[[], datetime.datetime] = _now) -> None:
        """``leading``, when given, is set while this replica holds the lease; ticks fire only then."""
        self._api = api
        self._leading = leading
        self._config = configuration
        self._actions = actions
        self._clock = clock
        self._tasks: dict[Key, Task] = {}
        self._heap: list[tuple[float, int, Key]] = []
        self._sequence = 0
        self._wakeup = asyncio.Event()
        self._claims = asyncio.Semaphore(CLAIMS_IN_FLIGHT)

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
            known = Task(namespace=key[0], name=key[1], uid=metadata["uid"], generation=metadata.get("generation", 0),
                         created=datetime.datetime.fromisoformat(metadata["creationTimestamp"]),
                         spec=None, status=models.StanTaskStatus.model_validate(body.get("status") or {}))
            self._tasks[key] = known
            async with known.lock:
                await self._reconcile(known, body, first_sight=True)
        request = (metadata.get("annotations") or {}).get(models.RUN_REQUEST_ANNOTATION)
        if request and request not in (known.status.lastRunRequest, known.requested) and not self._standby:
            known.requested = request
            asyncio.create_task(self._run_on_request(known, request))

    @property
    def _standby(self) -> bool:
        """A replica that does not hold the Lease keeps its view current but writes nothing."""
        return self._leading is not None and not self._leading.is_set()

    def _follow_claims(self, task: Task, observed: dict) -> None:
        """Adopt ticks that another replica claimed, so that a standby's heap stays current.

        Claims only move forward, so an older watch event never rolls this view back.
        """
        claimed = observed.get("lastScheduledAt")
        if not claimed or task.spec is None:
            return
        tick = datetime.datetime.fromisoformat(claimed)
        if task.status.lastScheduledAt is not None and tick <= task.status.lastScheduledAt:
            return
        task.status = models.StanTaskStatus.model_validate(observed)
        if task.next_tick is not None and task.next_tick <= tick:
            task.next_tick = self._next(task.spec, tick)
            self._push(task)

    def forget(self, namespace: str, name: str) -> None:
        task = self._tasks.pop((namespace, name), None)
        if task is not None:
            for run in task.active.values():
                run.cancel()

    async def _reconcile(self, task: Task, body: dict, *, first_sight: bool) -> None:
        task.generation = body["metadata"].get("generation", 0)
        spec, errors = validation.task_spec(body.get("spec"), self._config)
        was = task.status.status
        task.spec = spec
        if spec is None:
            task.next_tick = None
            message = validation.describe(errors)
            await self._write(task, {"nextRunAt": None, "observedGeneration": task.generation,
                                     "conditions": status.ready(task.status.conditions, False, "InvalidSpec", message,
                                                               task.generation)})
            await self._announce(task, "InvalidSpec", message, warning=True)
            return
        now = self._clock()
        if spec.paused:
            task.next_tick = None
            await self._write(task, {"status": "paused", "nextRunAt": None, "observedGeneration": task.generation,
                                     "conditions": status.ready(task.status.conditions, True, "Paused",
                                                               "The task is paused.", task.generation)})
            if was != "paused":
                await self._announce(task, "Paused", "The task is paused.")
            return
        patch: dict = {"status": "active", "observedGeneration": task.generation}
        baseline = task.status.lastScheduledAt
        if was == "paused":
            baseline = now
            patch["lastScheduledAt"] = models.format_timestamp(now)
        elif baseline is None:
            baseline = task.created
            patch["lastScheduledAt"] = models.format_timestamp(baseline)
        task.next_tick = self._first_tick(spec, baseline, now) if first_sight else self._next(spec, max(now, baseline))
        if first_sight and not self._standby:
            await self._recover(task)
        patch["nextRunAt"] = models.format_timestamp(task.next_tick)
        patch["conditions"] = status.ready(task.status.conditions, True, "Scheduled",
                                           "The task fires on its schedule.", task.generation)
        await self._write(task, patch)
        if was == "paused":
            await self._announce(task, "Resumed", f"The task is resumed; next run at {patch['nextRunAt']}.")
        self._push(task)

    def _next(self, spec: models.StanTaskSpec, after: datetime.datetime) -> datetime.datetime:
        return cron.next_tick(spec.schedule, spec.timeZone, after, allow_seconds=self._config.allowSecondSchedules)

    def _first_tick(self, spec: models.StanTaskSpec, baseline: datetime.datetime,
                    now: datetime.datetime) -> datetime.datetime:
        """The tick to fire first: the latest one missed since ``baseline``, if any, else the next one.

        Only the latest missed tick is owed (as batch/v1 CronJob does); ``_fire``
        runs it, or records it as skipped when it is past the deadline.
        """
        tick = self._next(spec, baseline)
        if tick > now:
            return tick
        return cron.previous_tick(spec.schedule, spec.timeZone, now, allow_seconds=self._config.allowSecondSchedules)

    # The timing loop.

    def _push(self, task: Task) -> None:
        assert task.next_tick is not None
        self._sequence += 1
        entry = (task.next_tick.timestamp(), self._sequence, task.key)
        heapq.heappush(self._heap, entry)
        if self._heap[0] is entry:
            self._wakeup.set()

    async def run(self) -> None:
        """Sleep until the earliest tick, fire everything due, repeat."""
        while True:
            if self._leading is not None and not self._leading.is_set():
                await self._leading.wait()
                for task in list(self._tasks.values()):
                    async with task.lock:
                        await self._recover(task)
            now = time.time()
            while self._heap and self._heap[0][0] <= now:
                due, _, key = heapq.heappop(self._heap)
                task = self._tasks.get(key)
                if task is not None and task.next_tick is not None and task.next_tick.timestamp() == due:
                    task.next_tick = None
                    asyncio.create_task(self._fire(task, task.generation, datetime.datetime.fromtimestamp(due, UTC)))
            self._wakeup.clear()
            timeout = self._heap[0][0] - time.time() if self._heap else None
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            except TimeoutError:
                pass

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
                context = self._context(task, task.spec, run)
                task.active[run.runId] = asyncio.create_task(self._execute(task, context))
            else:
                await self._finish(task, run.runId, Outcome(
                    models.RunResult.FAILED, "the operator stopped during this run; it is not run again"))

    def _context(self, task: Task, spec: models.StanTaskSpec, run: models.Run) -> RunContext:
        return RunContext(api=self._api, namespace=task.namespace, name=task.name, uid=task.uid,
                          task_id=ids.task_id(task.name), spec=spec, scheduled_at=run.scheduledAt, run_id=run.runId,
                          configuration=self._config)

    async def _fire(self, task: Task, generation: int, tick: datetime.datetime) -> None:
        async with task.lock, self._claims:
            current = self._tasks.get(task.key) is task and task.generation == generation
            if not current or task.spec is None or task.spec.paused:
                return
            spec = task.spec
            now = self._clock()
            missed = (now - tick).total_seconds() > spec.startingDeadlineSeconds
            skip_reason = self._skip_reason(task, spec, tick, now)
            # A tick past its deadline means the operator was away: go on from now, not tick by tick.
            following = self._next(spec, now if missed else tick)
            run = models.Run(runId=f"run_{secrets.token_hex(6)}", scheduledAt=tick, startedAt=now,
                             result=models.RunResult.SKIPPED if skip_reason else models.RunResult.RUNNING,
                             message=skip_reason or "", finishedAt=now if skip_reason else None)
            try:
                claimed = await self._claim(task, tick, run, following)
            except Exception as error:
                if not kube.transient(error):
                    raise
                log.warning("tick %s of %s/%s missed: the API server was unreachable until past the deadline",
                            tick, task.namespace, task.name)
                task.next_tick = self._next(spec, self._clock())
                self._push(task)
                return
            if not claimed:
                return
            task.next_tick = following
            self._push(task)
            if skip_reason:
                asyncio.create_task(events.post(
                    self._api, models.STAN_TASK, task.metadata, "Skipped",
                    f"Tick {models.format_timestamp(tick)} skipped: {skip_reason}", warning=True))
                return
            if spec.concurrencyPolicy == models.ConcurrencyPolicy.REPLACE.value:
                await self._replace_active(task)
            fired = (f"Run {run.runId} for tick {models.format_timestamp(tick)} started "
                     f"({(now - tick).total_seconds():.3f}s after the tick).")
            task.active[run.runId] = asyncio.create_task(self._start(task, self._context(task, spec, run), fired))

    async def _start(self, task: Task, context: RunContext, fired: str) -> None:
        """Announce the run, then run it: outside the claim slot, which the next due tick needs."""
        await events.post(self._api, models.STAN_TASK, task.metadata, "Fired", fired)
        await self._execute(task, context)

    async def _run_on_request(self, task: Task, request: str) -> None:
        """A run now, asked for through the annotation: recorded like a tick's, answered by lastRunRequest."""
        async with task.lock:
            spec = task.spec
            if self._tasks.get(task.key) is not task or spec is None or task.status.lastRunRequest == request:
                return
            now = self._clock()
            forbidden = spec.concurrencyPolicy == models.ConcurrencyPolicy.FORBID.value and task.active
            reason = "the previous run is still active (concurrencyPolicy: Forbid)" if forbidden else None
            run = models.Run(runId=f"run_{request[:12]}", scheduledAt=now, startedAt=now,
                             result=models.RunResult.SKIPPED if reason else models.RunResult.RUNNING,
                             message=reason or "run on request", finishedAt=now if reason else None)
            runs = _bounded([run, *task.status.recentRuns], spec.runHistoryLimit)
            dumped = [item.model_dump(mode="json", by_alias=True) for item in runs]
            patch = {"lastRunRequest": request, "lastRun": dumped[0], "recentRuns": dumped}
            if not reason:
                patch["lastRunAt"] = models.format_timestamp(now)
            await self._write(task, patch)
            if reason:
                return
            await events.post(self._api, models.STAN_TASK, task.metadata, "Fired",
                              f"Run {run.runId} started on request.")
            task.active[run.runId] = asyncio.create_task(self._execute(task, self._context(task, spec, run)))

    def _skip_reason(self, task: Task, spec: models.StanTaskSpec, tick: datetime.datetime,
                     now: datetime.datetime) -> str | None:
        late = (now - tick).total_seconds()
        if late > spec.startingDeadlineSeconds:
            return (f"missed by {late:.0f}s, more than startingDeadlineSeconds ({spec.startingDeadlineSeconds}); "
                    "the operator was not running at the tick")
        if spec.concurrencyPolicy == models.ConcurrencyPolicy.FORBID.value and task.active:
            return "the previous run is still active (concurrencyPolicy: Forbid)"
        return None

    async def _claim(self, task: Task, tick: datetime.datetime, run: models.Run,
                     following: datetime.datetime) -> bool:
        """Take the tick with a compare-and-swap on lastScheduledAt; False when another claim won."""
        runs = _bounded([run, *task.status.recentRuns], task.spec.runHistoryLimit if task.spec else 1)
        expected = models.format_timestamp(task.status.lastScheduledAt) if task.status.lastScheduledAt else None
        values = {"lastScheduledAt": models.format_timestamp(tick), "nextRunAt": models.format_timestamp(following),
                  "lastRun": run.model_dump(mode="json", by_alias=True),
                  "recentRuns": [item.model_dump(mode="json", by_alias=True) for item in runs]}
        if run.result == models.RunResult.RUNNING.value:
            values["lastRunAt"] = models.format_timestamp(run.startedAt) if run.startedAt else None
        patch = [{"op": "test", "path": "/status/lastScheduledAt", "value": expected}]
        patch += [{"op": "add", "path": f"/status/{field}", "value": value} for field, value in values.items()]
        deadline = tick + datetime.timedelta(seconds=task.spec.startingDeadlineSeconds if task.spec else 0)
        try:
            stored = await kube.patch_status(self._api, models.STAN_TASK, task.namespace, task.name, patch,
                                             give_up_after=max(1.0, (deadline - self._clock()).total_seconds()))
        except ApiException as error:
            if error.status in (404, 409, 422):
                log.info("tick %s of %s/%s not claimed (%s); resyncing", tick, task.namespace, task.name,
                         error.reason)
                await self._resync(task)
                return False
            raise
        task.status = models.StanTaskStatus.model_validate(stored.get("status") or {})
        return True

    async def _resync(self, task: Task) -> None:
        """Forget what this operator believed of the task and read it afresh."""
        self._tasks.pop(task.key, None)
        try:
            body = await kube.custom_objects(self._api).get_namespaced_custom_object(
                models.GROUP, models.VERSION, task.namespace, models.STAN_TASK.plural, task.name)
        except ApiException as error:
            if error.status == 404:
                return
            raise
        asyncio.create_task(self.observe(body))

    async def _replace_active(self, task: Task) -> None:
        for run_id, active in list(task.active.items()):
            active.cancel()
            await self._finish(task, run_id, Outcome(models.RunResult.FAILED, "replaced by a newer run "
                                                                              "(concurrencyPolicy: Replace)"))

    async def _execute(self, task: Task, context: RunContext) -> None:
        action = self._actions[context.spec.action]
        try:
            outcome = await action(context)
        except asyncio.CancelledError:
            if context.spec.action in self._config.jobActions:
                await jobs.stop(self._api, task.namespace,
                                jobs.job_name(task.name, context.scheduled_at.timestamp()))
            raise
        except Exception as error:  # an action's own bug must not stop the scheduler
            log.exception("action %s of %s/%s raised", context.spec.action, task.namespace, task.name)
            outcome = Outcome(models.RunResult.FAILED, f"{type(error).__name__}: {error}")
        async with task.lock:
            await self._finish(task, context.run_id, outcome)
        if context.spec.action in self._config.jobActions:
            await jobs.prune(self._api, task.namespace, task.uid, context.spec.runHistoryLimit)

    async def _finish(self, task: Task, run_id: str, outcome: Outcome) -> None:
        task.active.pop(run_id, None)
        runs = list(task.status.recentRuns)
        for index, run in enumerate(runs):
            if run.runId == run_id:
                runs[index] = run.model_copy(update={"result": outcome.result, "message": outcome.message,
                                                     "finishedAt": self._clock()})
                break
        else:
            return
        dumped = [run.model_dump(mode="json", by_alias=True) for run in runs]
        await self._write(task, {"recentRuns": dumped, "lastRun": dumped[0]})
        succeeded = outcome.result == models.RunResult.SUCCEEDED.value
        await events.post(self._api, models.STAN_TASK, task.metadata, "Succeeded" if succeeded else "Failed",
                          f"Run {run_id}: {outcome.message}", warning=not succeeded)

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
