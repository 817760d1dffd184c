"""The scheduler driven on a clock the tests set, with its side effects kept in memory: no API server.

Each test sees tasks as the watch would deliver them, moves the clock to a tick, fires what is due
and lets the scheduler's background work settle; what it then finds in the status store and among
the Events is what an API server would have been sent.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import client

from stan_core import backfill, config, models, schedule
from stan_core.kube import Body
from stan_operator import supervision, ticks
from stan_operator.actions import Outcome, RunContext
from stan_operator.effects import ClaimLost, ObjectRef, Patch, Stored, TaskEffects, holds
from stan_operator.scheduler import Scheduler

UTC = datetime.UTC
NAMESPACE = "tenant"
TASK = "report"
ACTION = "audit_workflows"


def at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


def stamp(text: str) -> str:
    return models.format_timestamp(at(text))


class Clock:
    def __init__(self, now: datetime.datetime) -> None:
        self.now = now

    def __call__(self) -> datetime.datetime:
        return self.now


class MemoryStatusStore:
    """Status kept as an API server would: claims compare lastScheduledAt and may lose."""

    def __init__(self) -> None:
        self.statuses: dict[str, Body] = {}
        self.bodies: dict[str, Body] = {}
        self.writes: list[Patch] = []
        self.reads: list[str] = []

    def stored(self, name: str = TASK) -> models.StanTaskStatus:
        return models.StanTaskStatus.model_validate(self.statuses[name])

    def claim_elsewhere(self, tick: str, name: str = TASK) -> None:
        """Another replica claims a tick, so that this one's claim of it loses."""
        self.statuses[name]["lastScheduledAt"] = stamp(tick)

    async def write(
        self, namespace: str, name: str, current: models.StanTaskStatus, patch: Patch
    ) -> Stored[models.StanTaskStatus] | None:
        if name not in self.statuses:
            return None
        self.writes.append(patch)
        self.statuses[name].update(copy.deepcopy(patch))
        return Stored(self.stored(name), str(len(self.writes)))

    async def claim(
        self,
        namespace: str,
        name: str,
        *,
        current: Stored[models.StanTaskStatus],
        expected: Patch,
        fields: Patch,
        give_up_after: float,
    ) -> Stored[models.StanTaskStatus]:
        if name not in self.statuses:
            raise ClaimLost("NotFound")
        if not holds(self.statuses[name], expected):
            raise ClaimLost("status moved on")
        self.statuses[name].update(copy.deepcopy(fields))
        return Stored(self.stored(name), str(len(self.writes)))

    async def read(self, namespace: str, name: str) -> Body | None:
        self.reads.append(name)
        return task_body(status=self.statuses[name]) if name in self.statuses else None

    async def pause(self, namespace: str, name: str, note: str) -> Body | None:
        """As a merge patch of the spec would: the next generation, paused with the note."""
        body = copy.deepcopy(self.bodies[name])
        body["metadata"]["generation"] += 1
        body["spec"] |= {"paused": True, "pauseNote": note}
        body["status"] = copy.deepcopy(self.statuses[name])
        self.bodies[name] = body
        return body


class MemoryEvents:
    def __init__(self) -> None:
        self.posted: list[tuple[str, str]] = []

    async def post(self, involved: ObjectRef, reason: str, message: str, *, warning: bool = False) -> None:
        self.posted.append((reason, message))

    @property
    def reasons(self) -> list[str]:
        return [reason for reason, _ in self.posted]


class MemoryJobs:
    async def stop(self, namespace: str, job: str) -> None:
        raise AssertionError("only in-process actions run here")

    async def prune(self, namespace: str, task_uid: str, keep: int) -> None:
        raise AssertionError("only in-process actions run here")


class Work:
    """An in-process action that goes on until the test lets it finish."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.done = asyncio.Event()
        self.outcome = Outcome(models.RunResult.SUCCEEDED, "done")

    async def __call__(self, context: RunContext) -> Outcome:
        self.started.append(context.run_id)
        try:
            await self.done.wait()
        except asyncio.CancelledError:
            self.cancelled.append(context.run_id)
            raise
        return self.outcome


def task_body(
    *, generation: int = 1, status: Body | None = None, annotations: dict[str, str] | None = None, **spec: Any
) -> Body:
    return {
        "metadata": {
            "namespace": NAMESPACE,
            "name": TASK,
            "uid": "uid-1",
            "generation": generation,
            "creationTimestamp": "2026-03-01T09:30:00Z",
            "annotations": annotations or {},
        },
        "spec": {"name": TASK, "action": ACTION, "schedule": "0 * * * *", "modelId": "m", **spec},
        "status": copy.deepcopy(status or {}),
    }


async def settled() -> None:
    """Let the scheduler's background work run until it waits on what the test controls."""
    for _ in range(50):
        await asyncio.sleep(0)


@dataclasses.dataclass
class Harness:
    clock: Clock
    store: MemoryStatusStore
    events: MemoryEvents
    work: Work
    leading: asyncio.Event
    supervisor: supervision.Supervisor
    scheduler: Scheduler

    async def see(self, body: Body) -> None:
        """A watch event: the store holds what the watch delivers."""
        self.store.statuses.setdefault(body["metadata"]["name"], copy.deepcopy(body["status"]))
        self.store.bodies[body["metadata"]["name"]] = copy.deepcopy(body)
        await self.scheduler.observe(body)
        await settled()

    async def tick(self, moment: str) -> None:
        self.clock.now = at(moment)
        self.scheduler.fire_due()
        await settled()

    def runs(self) -> list[tuple[str, str, str]]:
        """Each recorded run's tick, result and message, newest first."""
        return [
            (models.format_timestamp(run.scheduledAt), run.result, run.message)
            for run in self.store.stored().recentRuns
        ]


@pytest.fixture(params=["all"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """The scheduler, every run's Event posted unless a test asks for another runEvents with
    ``@pytest.mark.parametrize("harness", [...], indirect=True)``."""
    clock = Clock(at("2026-03-01 09:30"))
    store, events, work = MemoryStatusStore(), MemoryEvents(), Work()
    leading = asyncio.Event()
    leading.set()
    supervisor = supervision.Supervisor(clock=lambda: 0.0)
    async with client.ApiClient() as api:
        scheduler = Scheduler(
            api,
            config.OperatorConfig(runEvents=request.param),
            {ACTION: work},
            supervisor,
            TaskEffects(store, events, MemoryJobs()),
            leading,
            clock,
        )
        yield Harness(clock, store, events, work, leading, supervisor, scheduler)
        supervisor.stop()
        await settled()


async def test_a_tick_is_claimed_run_and_recorded(harness: Harness) -> None:
    await harness.see(task_body())
    assert harness.store.stored().nextRunAt == at("2026-03-01 10:00")
    await harness.tick("2026-03-01 10:00")
    stored = harness.store.stored()
    assert stored.lastScheduledAt == at("2026-03-01 10:00") and stored.nextRunAt == at("2026-03-01 11:00")
    assert harness.runs() == [(stamp("2026-03-01 10:00"), "running", "")]
    harness.work.done.set()
    await settled()
    assert harness.runs() == [(stamp("2026-03-01 10:00"), "succeeded", "done")]
    assert harness.events.reasons == ["Fired", "Succeeded"]


async def test_a_claim_that_loses_cancels_its_run_and_rereads_the_task(harness: Harness) -> None:
    """Another replica claimed the tick: this one's run is dropped, and its view of the task renewed."""
    await harness.see(task_body())
    harness.store.claim_elsewhere("2026-03-01 10:00")
    await harness.tick("2026-03-01 10:00")
    assert harness.work.started and harness.work.cancelled == harness.work.started
    assert harness.runs() == [], "nothing of the lost run is recorded"
    assert harness.store.reads == [TASK]
    assert harness.events.reasons == []
    await harness.tick("2026-03-01 11:00")
    assert harness.runs() == [(stamp("2026-03-01 11:00"), "running", "")], "the re-read view claims the next tick"


async def test_a_run_started_before_a_pause_is_recorded_and_the_pause_stands(harness: Harness) -> None:
    await harness.see(task_body())
    harness.clock.now = at("2026-03-01 10:00")
    harness.scheduler.fire_due()
    await harness.scheduler.observe(task_body(generation=2, paused=True))
    await settled()
    stored = harness.store.stored()
    assert harness.runs() == [(stamp("2026-03-01 10:00"), "running", "")]
    assert stored.status == "paused" and stored.nextRunAt is None, "the claim keeps the nextRunAt the pause wrote"
    await harness.tick("2026-03-01 11:00")
    assert len(harness.work.started) == 1, "a paused task does not fire"


async def test_a_schedule_changed_during_a_run_takes_over_from_now(harness: Harness) -> None:
    await harness.see(task_body())
    harness.clock.now = at("2026-03-01 10:00")
    harness.scheduler.fire_due()
    await harness.scheduler.observe(task_body(generation=2, schedule="30 * * * *"))
    await settled()
    assert harness.runs() == [(stamp("2026-03-01 10:00"), "running", "")], "the started run is recorded"
    assert harness.store.stored().nextRunAt == at("2026-03-01 10:30"), "the new schedule's tick, not the old 11:00"
    await harness.tick("2026-03-01 10:30")
    assert [tick for tick, _, _ in harness.runs()] == [stamp("2026-03-01 10:30"), stamp("2026-03-01 10:00")]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("Allow", [("running", ""), ("running", "")]),
        ("Forbid", [("skipped", ticks.FORBIDDEN), ("running", "")]),
        ("Replace", [("running", ""), ("failed", "replaced by a newer run (concurrencyPolicy: Replace)")]),
    ],
)
async def test_a_tick_while_the_previous_run_goes_on(
    harness: Harness, policy: str, expected: list[tuple[str, str]]
) -> None:
    await harness.see(task_body(concurrencyPolicy=policy))
    await harness.tick("2026-03-01 10:00")
    await harness.tick("2026-03-01 11:00")
    assert [(result, message) for _, result, message in harness.runs()] == expected
    if policy == "Forbid":
        assert len(harness.work.started) == 1 and "Skipped" in harness.events.reasons
    if policy == "Replace":
        assert harness.work.cancelled == harness.work.started[:1], "the earlier run is stopped"


async def test_after_a_restart_the_latest_missed_tick_runs_within_its_deadline(harness: Harness) -> None:
    harness.clock.now = at("2026-03-01 10:02")
    await harness.see(task_body(status={"status": "active", "lastScheduledAt": stamp("2026-03-01 06:00")}))
    await harness.tick("2026-03-01 10:02")
    assert harness.runs() == [(stamp("2026-03-01 10:00"), "running", "")], "only the latest missed tick, once"
    assert harness.store.stored().nextRunAt == at("2026-03-01 11:00")


async def test_after_a_restart_a_tick_past_its_deadline_is_recorded_as_skipped(harness: Harness) -> None:
    harness.clock.now = at("2026-03-01 10:10")
    await harness.see(task_body(status={"status": "active", "lastScheduledAt": stamp("2026-03-01 06:00")}))
    await harness.tick("2026-03-01 10:10")
    [(tick, result, message)] = harness.runs()
    assert (tick, result) == (stamp("2026-03-01 10:00"), "skipped") and message.startswith("missed by 600s")
    assert harness.work.started == []
    assert harness.store.stored().nextRunAt == at("2026-03-01 11:00"), "the schedule goes on from now"


async def test_after_a_restart_a_run_left_going_is_recorded_as_failed_not_run_again(harness: Harness) -> None:
    left = models.Run(
        runId="run_left",
        scheduledAt=at("2026-03-01 10:00"),
        startedAt=at("2026-03-01 10:00"),
        result=models.RunResult.RUNNING,
    )
    status = {
        "status": "active",
        "lastScheduledAt": stamp("2026-03-01 10:00"),
        "recentRuns": [left.dumped()],
    }
    harness.clock.now = at("2026-03-01 10:20")
    await harness.see(task_body(status=status))
    [(_, result, message)] = harness.runs()
    assert (result, message) == ("failed", "the operator stopped during this run; it is not run again")
    assert harness.work.started == []


@pytest.mark.parametrize(
    ("created", "fired", "following"),
    [
        ("2026-03-07 12:00", "2026-03-08 07:00", "2026-03-09 06:30"),
        ("2026-10-31 12:00", "2026-11-01 07:30", "2026-11-02 07:30"),
    ],
    ids=["spring-forward: 02:30 does not exist", "fall-back: 02:30 comes once"],
)
async def test_a_daylight_saving_transition_fires_its_day_once(
    harness: Harness, created: str, fired: str, following: str
) -> None:
    """In New York 02:30 is skipped on 2026-03-08 (the tick moves to the change, 03:00 EDT) and comes once
    on 2026-11-01, although 01:00 to 02:00 does twice."""
    body = task_body(schedule="30 2 * * *", timeZone="America/New_York")
    body["metadata"]["creationTimestamp"] = stamp(created)
    harness.clock.now = at(created)
    await harness.see(body)
    assert harness.store.stored().nextRunAt == at(fired)
    await harness.tick(fired)
    assert harness.runs() == [(stamp(fired), "running", "")]
    assert harness.store.stored().nextRunAt == at(following)


async def test_a_run_request_runs_once_and_is_answered(harness: Harness) -> None:
    await harness.see(task_body())
    harness.clock.now = at("2026-03-01 09:45")
    requested = task_body(annotations={models.RUN_REQUEST_ANNOTATION: "request-1"})
    await harness.see(requested)
    await harness.see(requested)
    stored = harness.store.stored()
    assert stored.lastRunRequest == "request-1" and stored.lastRunAt == at("2026-03-01 09:45")
    assert harness.runs() == [(stamp("2026-03-01 09:45"), "running", "run on request")]
    assert len(harness.work.started) == 1, "a repeated watch event starts no second run"
    assert harness.events.reasons == ["Fired"]


async def test_a_standby_writes_nothing_and_adopts_the_leaders_claims(harness: Harness) -> None:
    harness.leading.clear()
    await harness.see(task_body(annotations={models.RUN_REQUEST_ANNOTATION: "request-1"}))
    assert harness.store.writes == [] and harness.events.posted == [] and harness.work.started == []
    harness.store.claim_elsewhere("2026-03-01 10:00")
    await harness.see(task_body(status=harness.store.statuses[TASK]))
    harness.leading.set()
    await harness.tick("2026-03-01 10:00")
    assert harness.work.started == [], "the leader's tick is not fired again"
    await harness.tick("2026-03-01 11:00")
    assert harness.runs() == [(stamp("2026-03-01 11:00"), "running", "")], "claimed against the adopted claim"


async def test_a_jittered_tick_fires_at_its_due_time_and_is_claimed_as_the_tick(harness: Harness) -> None:
    """scheduledAt and lastScheduledAt keep the nominal tick; nextRunAt and the start carry the jitter."""
    await harness.see(task_body(jitterSeconds=1800))
    plan = schedule.Schedule("0 * * * *", "UTC", uid="uid-1", jitter_seconds=1800)
    due = plan.due(at("2026-03-01 10:00"))
    assert harness.store.stored().nextRunAt == due > at("2026-03-01 10:00")
    await harness.tick("2026-03-01 10:00")
    assert harness.work.started == [], "not before its jitter"
    harness.clock.now = due
    harness.scheduler.fire_due()
    await settled()
    [recorded] = harness.store.stored().recentRuns
    assert recorded.scheduledAt == at("2026-03-01 10:00") and recorded.startedAt == due
    stored = harness.store.stored()
    assert stored.lastScheduledAt == at("2026-03-01 10:00")
    assert stored.nextRunAt == plan.due(at("2026-03-01 11:00"))


async def test_max_runs_fires_that_many_runs_then_finishes(harness: Harness) -> None:
    await harness.see(task_body(maxRuns=2))
    assert harness.store.stored().remainingRuns == 2
    harness.work.done.set()
    await harness.tick("2026-03-01 10:00")
    await harness.tick("2026-03-01 11:00")
    stored = harness.store.stored()
    assert (stored.remainingRuns, stored.nextRunAt, stored.status) == (0, None, "active")
    finished = next(c for c in stored.conditions if c.type == "Finished")
    assert (finished.status, finished.message) == (
        "True",
        "all 2 runs of maxRuns have been scheduled; the task fires no more",
    )
    assert harness.events.reasons.count("Finished") == 1
    await harness.tick("2026-03-01 12:00")
    assert len(harness.work.started) == 2


async def test_past_end_at_the_task_fires_no_more(harness: Harness) -> None:
    await harness.see(task_body(endAt="2026-03-01T11:00:00Z"))
    await harness.tick("2026-03-01 10:00")
    await harness.tick("2026-03-01 11:00")
    stored = harness.store.stored()
    assert stored.nextRunAt is None and [c.type for c in stored.conditions] == ["Ready", "Finished"]
    assert [tick for tick, _, _ in harness.runs()] == [stamp("2026-03-01 11:00"), stamp("2026-03-01 10:00")]
    assert "Finished" in harness.events.reasons


async def test_the_last_success_and_failure_outlive_the_run_history(harness: Harness) -> None:
    await harness.see(task_body(runHistoryLimit=1))
    harness.work.done.set()
    await harness.tick("2026-03-01 10:00")
    await harness.tick("2026-03-01 11:00")
    stored = harness.store.stored()
    assert [run.scheduledAt for run in stored.recentRuns] == [at("2026-03-01 11:00")]
    assert stored.lastSuccessfulAt == at("2026-03-01 11:00") and stored.lastFailedAt is None


async def test_resuming_fires_nothing_of_the_pause_nor_anything_extra(harness: Harness) -> None:
    await harness.see(task_body())
    await harness.tick("2026-03-01 10:00")
    await harness.see(task_body(generation=2, paused=True, status=harness.store.statuses[TASK]))
    await harness.tick("2026-03-01 11:00")
    harness.clock.now = at("2026-03-01 12:30")
    await harness.see(task_body(generation=3, status=harness.store.statuses[TASK]))
    harness.scheduler.fire_due()
    await settled()
    assert len(harness.work.started) == 1, "neither 11:00 nor 12:00 is backfilled"
    assert harness.store.stored().nextRunAt == at("2026-03-01 13:00")
    await harness.tick("2026-03-01 13:00")
    assert [tick for tick, _, _ in harness.runs()] == [stamp("2026-03-01 13:00"), stamp("2026-03-01 10:00")]


async def test_an_edited_schedule_fires_each_tick_once(harness: Harness) -> None:
    await harness.see(task_body())
    await harness.tick("2026-03-01 10:00")
    harness.clock.now = at("2026-03-01 10:00:30")
    await harness.see(task_body(generation=2, schedule="*/30 * * * *", status=harness.store.statuses[TASK]))
    harness.scheduler.fire_due()
    await settled()
    assert len(harness.work.started) == 1, "10:00 of the new schedule was accounted for"
    await harness.tick("2026-03-01 10:30")
    assert [tick for tick, _, _ in harness.runs()] == [stamp("2026-03-01 10:30"), stamp("2026-03-01 10:00")]


@pytest.mark.parametrize(("policy", "refused"), [("Forbid", True), ("Allow", False)])
async def test_a_run_now_during_a_run_follows_the_concurrency_policy(
    harness: Harness, policy: str, refused: bool
) -> None:
    await harness.see(task_body(concurrencyPolicy=policy))
    await harness.tick("2026-03-01 10:00")
    harness.clock.now = at("2026-03-01 10:10")
    await harness.see(task_body(concurrencyPolicy=policy, annotations={models.RUN_REQUEST_ANNOTATION: "request-1"}))
    latest = harness.runs()[0]
    assert latest == (
        (stamp("2026-03-01 10:10"), "skipped", ticks.FORBIDDEN)
        if refused
        else (stamp("2026-03-01 10:10"), "running", "run on request")
    )
    assert len(harness.work.started) == (1 if refused else 2)
    await harness.tick("2026-03-01 10:30")
    assert len(harness.work.started) == (1 if refused else 2), "the request fires no scheduled tick early"
    assert harness.store.stored().lastScheduledAt == at("2026-03-01 10:00")


async def test_buffer_one_runs_a_tick_after_the_going_run_and_skips_a_second(harness: Harness) -> None:
    await harness.see(task_body(concurrencyPolicy="BufferOne"))
    await harness.tick("2026-03-01 10:00")
    await harness.tick("2026-03-01 11:00")
    await harness.tick("2026-03-01 12:00")
    assert [(result, message) for _, result, message in harness.runs()] == [
        ("skipped", ticks.ALREADY_WAITING),
        ("running", ticks.WAITING),
        ("running", ""),
    ]
    waiting = harness.store.stored().recentRuns[1]
    assert waiting.startedAt is None and len(harness.work.started) == 1, "the 11:00 tick waits, claimed"
    assert harness.store.stored().lastScheduledAt == at("2026-03-01 12:00")
    harness.clock.now = at("2026-03-01 12:10")
    harness.work.done.set()
    await settled()
    assert [(tick, result) for tick, result, _ in harness.runs()] == [
        (stamp("2026-03-01 12:00"), "skipped"),
        (stamp("2026-03-01 11:00"), "succeeded"),
        (stamp("2026-03-01 10:00"), "succeeded"),
    ]
    assert harness.store.stored().recentRuns[1].startedAt == at("2026-03-01 12:10"), "it started once 10:00 ended"
    assert len(harness.work.started) == 2
    assert harness.events.reasons.count("Waiting") == 1 and "Skipped" in harness.events.reasons
    await harness.tick("2026-03-01 13:00")
    assert harness.runs()[0] == (stamp("2026-03-01 13:00"), "succeeded", "done"), "nothing going: it runs at once"


async def test_a_run_now_under_buffer_one_waits_for_the_going_run(harness: Harness) -> None:
    await harness.see(task_body(concurrencyPolicy="BufferOne"))
    await harness.tick("2026-03-01 10:00")
    harness.clock.now = at("2026-03-01 10:10")
    requested = task_body(concurrencyPolicy="BufferOne", annotations={models.RUN_REQUEST_ANNOTATION: "request-1"})
    await harness.see(requested)
    assert harness.runs()[0] == (stamp("2026-03-01 10:10"), "running", ticks.WAITING)
    assert len(harness.work.started) == 1
    again = task_body(concurrencyPolicy="BufferOne", annotations={models.RUN_REQUEST_ANNOTATION: "request-2"})
    await harness.see(again)
    assert harness.runs()[0] == (stamp("2026-03-01 10:10"), "skipped", ticks.ALREADY_WAITING)
    harness.work.done.set()
    await settled()
    assert len(harness.work.started) == 2, "the waiting request ran once the tick's run ended; the second did not"


async def test_after_a_restart_a_run_that_waited_starts(harness: Harness) -> None:
    waiting = models.Run(
        runId="run_waiting", scheduledAt=at("2026-03-01 10:00"), result=models.RunResult.RUNNING, message=ticks.WAITING
    )
    status = {
        "status": "active",
        "lastScheduledAt": stamp("2026-03-01 10:00"),
        "recentRuns": [waiting.dumped()],
    }
    harness.clock.now = at("2026-03-01 10:05")
    harness.work.done.set()
    await harness.see(task_body(concurrencyPolicy="BufferOne", status=status))
    assert harness.runs() == [(stamp("2026-03-01 10:00"), "succeeded", "done")], "it never began, so it may run"
    assert harness.store.stored().recentRuns[0].startedAt == at("2026-03-01 10:05")


async def test_a_pause_keeps_its_note_and_when_and_a_resume_clears_them(harness: Harness) -> None:
    await harness.see(task_body())
    harness.clock.now = at("2026-03-01 09:40")
    await harness.see(task_body(generation=2, paused=True, pauseNote="database migration"))
    stored = harness.store.stored()
    assert (stored.status, stored.pausedAt) == ("paused", at("2026-03-01 09:40"))
    assert stored.pauseNote == "database migration"
    assert ("Paused", "The task is paused: database migration") in harness.events.posted
    harness.clock.now = at("2026-03-01 09:50")
    await harness.see(task_body(generation=3))
    stored = harness.store.stored()
    assert (stored.status, stored.pausedAt, stored.pauseNote) == ("active", None, None)
    assert stored.resumedAt == at("2026-03-01 09:50")


async def test_pause_after_failures_pauses_with_a_note_and_counts_afresh_after_a_resume(harness: Harness) -> None:
    harness.work.outcome = Outcome(models.RunResult.FAILED, "exit 3")
    harness.work.done.set()
    await harness.see(task_body(pauseAfterFailures=2))
    await harness.tick("2026-03-01 10:00")
    assert harness.store.stored().status == "active", "one failure is not two"
    await harness.tick("2026-03-01 11:00")
    stored = harness.store.stored()
    note = "paused after 2 failed runs in a row (pauseAfterFailures); the last: exit 3"
    assert (stored.status, stored.pauseNote, stored.pausedAt) == ("paused", note, at("2026-03-01 11:00"))
    assert harness.store.bodies[TASK]["spec"]["paused"] is True, "the spec says so, as kubectl and the API show"
    assert ("Paused", f"The task is paused: {note}") in harness.events.posted
    await harness.tick("2026-03-01 12:00")
    assert len(harness.work.started) == 2, "a paused task fires no more"
    harness.clock.now = at("2026-03-01 12:30")
    await harness.see(task_body(generation=3, pauseAfterFailures=2, status=harness.store.statuses[TASK]))
    await harness.tick("2026-03-01 13:00")
    assert harness.store.stored().status == "active", "the failures before the resume do not count"
    await harness.tick("2026-03-01 14:00")
    assert harness.store.stored().status == "paused"


def backfill_request(request: str, start: str, end: str) -> dict[str, str]:
    return {models.BACKFILL_REQUEST_ANNOTATION: backfill.Request(request, at(start), at(end)).annotation()}


async def test_a_backfill_runs_each_past_tick_that_did_not_run_once_oldest_first(harness: Harness) -> None:
    harness.work.done.set()
    await harness.see(task_body())
    await harness.tick("2026-03-01 10:00")
    await harness.tick("2026-03-01 11:00")
    harness.clock.now = at("2026-03-01 11:30")
    await harness.see(task_body(generation=2, paused=True, status=harness.store.statuses[TASK]))
    harness.clock.now = at("2026-03-01 14:30")
    await harness.see(task_body(generation=3, status=harness.store.statuses[TASK]))
    request = backfill_request("b1", "2026-03-01 09:00", "2026-03-01 14:30")
    await harness.see(task_body(generation=3, annotations=request, status=harness.store.statuses[TASK]))
    stored = harness.store.stored()
    assert stored.backfill is not None and (stored.backfill.ticks, stored.backfill.alreadyRan) == (4, 2)
    assert stored.backfill.handled == 4 and stored.backfill.finishedAt == at("2026-03-01 14:30")
    ran = sorted(run.scheduledAt for run in stored.recentRuns if run.result == "succeeded")
    assert ran == [at(f"2026-03-01 {hour:02d}:00") for hour in (9, 10, 11, 12, 13, 14)], "each tick once"
    assert [(span.first, span.last) for span in stored.ranTicks] == [(at("2026-03-01 09:00"), at("2026-03-01 14:00"))]
    started = len(harness.work.started)
    again = backfill_request("b2", "2026-03-01 09:00", "2026-03-01 14:30")
    await harness.see(task_body(generation=3, annotations=again, status=harness.store.statuses[TASK]))
    stored = harness.store.stored()
    assert stored.backfill is not None and (stored.backfill.ticks, stored.backfill.alreadyRan) == (0, 6)
    assert len(harness.work.started) == started, "a second backfill of the range runs nothing"
    assert "Backfilled" in harness.events.reasons


BACKFILLED = (stamp("2026-03-01 12:00"), stamp("2026-03-01 11:00"), stamp("2026-03-01 10:00"))


@pytest.mark.parametrize(
    ("policy", "while_going", "in_the_end"),
    [
        ("Forbid", ["skipped", "skipped", "running"], ["skipped", "skipped", "succeeded"]),
        ("BufferOne", ["running", "running"], ["succeeded", "succeeded", "succeeded"]),
    ],
)
async def test_a_backfill_follows_the_concurrency_policy(
    harness: Harness, policy: str, while_going: list[str], in_the_end: list[str]
) -> None:
    """Forbid skips the ticks that come while a run goes; under BufferOne the second tick waits, and the
    third is handed over only once none does, so that the backfill runs one after another."""
    harness.clock.now = at("2026-03-01 12:30")
    status = {
        "status": "active",
        "lastScheduledAt": stamp("2026-03-01 12:00"),
        "ranTicks": [],
        "ranTicksSince": stamp("2026-03-01 09:00"),
    }
    request = backfill_request("b1", "2026-03-01 10:00", "2026-03-01 12:00")
    await harness.see(task_body(concurrencyPolicy=policy, annotations=request, status=status))
    going = [(tick, result) for tick, result, _ in harness.runs()]
    assert going == list(zip(BACKFILLED[-len(while_going) :], while_going, strict=True))
    harness.work.done.set()
    for _ in range(5):
        await settled()
    assert [(tick, result) for tick, result, _ in harness.runs()] == list(zip(BACKFILLED, in_the_end, strict=True))


async def test_a_backfill_of_too_many_ticks_or_of_the_schedules_own_is_refused(harness: Harness) -> None:
    harness.clock.now = at("2026-03-01 12:30")
    status = {
        "status": "active",
        "lastScheduledAt": stamp("2026-03-01 12:00"),
        "ranTicks": [],
        "ranTicksSince": stamp("2025-12-01 00:00"),
    }
    too_many = backfill_request("b1", "2026-01-01 00:00", "2026-03-01 12:00")
    await harness.see(task_body(annotations=too_many, status=status))
    stored = harness.store.stored()
    assert stored.backfill is not None and stored.backfill.refusal is not None
    assert stored.backfill.refusal.startswith("to: the range holds more than 1000 ticks")
    assert harness.work.started == [] and "BackfillRefused" in harness.events.reasons
    ahead = backfill_request("b2", "2026-03-01 12:10", "2026-03-01 15:00")
    await harness.see(task_body(annotations=ahead, status=harness.store.statuses[TASK]))
    refused = harness.store.stored().backfill
    assert refused is not None and refused.refusal is not None
    assert refused.refusal.startswith("from: must be at or before 2026-03-01T12:00:00Z")
    early = backfill_request("b3", "2025-11-30 00:00", "2025-12-02 00:00")
    await harness.see(task_body(annotations=early, status=harness.store.statuses[TASK]))
    refused = harness.store.stored().backfill
    assert refused is not None and refused.refusal == (
        "from: must be after 2025-12-01T00:00:00Z: which earlier ticks ran is no longer recorded"
    )


async def test_a_task_from_before_the_ledger_is_not_backfilled_before_its_last_tick(harness: Harness) -> None:
    harness.clock.now = at("2026-03-01 12:30")
    status = {"status": "active", "lastScheduledAt": stamp("2026-03-01 12:00")}
    request = backfill_request("b1", "2026-03-01 10:00", "2026-03-01 12:00")
    await harness.see(task_body(annotations=request, status=status))
    stored = harness.store.stored()
    assert stored.ranTicksSince == at("2026-03-01 12:00")
    assert stored.backfill is not None and stored.backfill.refusal is not None
    assert harness.work.started == []


@pytest.mark.parametrize(
    ("harness", "expected"),
    [
        ("failures", ["Succeeded", "Failed", "Failed", "Succeeded"]),
        ("none", []),
        ("all", ["Succeeded", "Succeeded", "Failed", "Failed", "Succeeded", "Succeeded"]),
    ],
    indirect=["harness"],
)
async def test_run_events_tell_every_run_or_failures_and_changes_or_none(harness: Harness, expected: list[str]) -> None:
    """By default a success after a success posts nothing: the metrics count it, the history shows it."""
    harness.work.done.set()
    await harness.see(task_body())
    results = ("succeeded", "succeeded", "failed", "failed", "succeeded", "succeeded")
    for hour, result in enumerate(results, start=10):
        harness.work.outcome = Outcome(models.RunResult(result), result)
        await harness.tick(f"2026-03-01 {hour}:00")
    assert harness.events.reasons == expected
