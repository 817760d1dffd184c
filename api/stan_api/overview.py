"""Read-only views of a tenant for dashboards such as the console (Stan additions beside the contract).

The contract's list shows six fields a task; a dashboard of many tasks also
needs each task's runs, its schedule in words, the runs to come and the
heartbeat's last results. Answering them here, from the facade's caches, costs a
dashboard three requests a refresh instead of two per task.
"""

from __future__ import annotations

import asyncio
import datetime

from pydantic import BaseModel, Field

from stan_api import schedule_words, schemas, views
from stan_api.facade import Facade
from stan_core import cron, models

UPCOMING_PER_TASK = 24
"""The runs of one task an upcoming window lists at most: a task firing every few seconds would otherwise
fill it with thousands of ticks that say no more than its schedule does."""


class TaskOverview(schemas.Task):
    """A task in full, with what a dashboard shows of it."""

    scheduleText: str = Field(description="The schedule in words, with its time zone.")
    lastResult: str | None = Field(description="The result of the latest run: succeeded, failed or skipped.")
    recentRuns: list[schemas.Run] = Field(description="Newest first.")


class UpcomingRun(BaseModel):
    taskId: str
    name: str
    at: models.Timestamp


class Upcoming(BaseModel):
    start: models.Timestamp
    end: models.Timestamp
    runs: list[UpcomingRun] = Field(description="Soonest first.")
    truncated: list[str] = Field(
        description=f"Tasks whose runs in the window pass {UPCOMING_PER_TASK}: only their "
        f"first {UPCOMING_PER_TASK} are listed."
    )


class HeartbeatStatus(BaseModel):
    """The latest heartbeat run; all empty before the first."""

    lastRunAt: models.Timestamp | None
    nextRunAt: models.Timestamp | None
    healthy: bool | None
    results: list[schemas.CheckResult]


def tasks(facade: Facade, namespace: str) -> list[TaskOverview]:
    """The tenant's tasks, oldest first, as the contract's list orders them."""
    facade.require_cluster()
    bodies = sorted(
        facade.tasks.in_namespace(namespace),
        key=lambda body: (body["metadata"]["creationTimestamp"], body["metadata"]["name"]),
    )
    return [_task(body) for body in bodies]


def _task(body: dict) -> TaskOverview:
    task = views.full(body)
    status = views.task_status(body)
    return TaskOverview(
        **task.model_dump(),
        scheduleText=schedule_words.describe(task.schedule, task.timeZone),
        lastResult=status.latestRun.result if status.latestRun else None,
        recentRuns=[schemas.Run.model_validate(run, from_attributes=True) for run in status.recentRuns],
    )


async def upcoming(facade: Facade, namespace: str, hours: int, now: datetime.datetime) -> Upcoming:
    """The active tasks' runs from ``now`` for ``hours``, in time order, from the operator's own tick
    function, so that the window shows what the operator will fire (DST included). Ticks cost a fraction
    of a millisecond each, so they are counted in a thread, from a snapshot of the tasks, beside the loop."""
    facade.require_cluster()
    active = [task for task in map(views.full, facade.tasks.in_namespace(namespace)) if task.status == "active"]
    end = now + datetime.timedelta(hours=hours)
    return await asyncio.to_thread(_window, active, now, end, facade.configuration.allowSecondSchedules)


def _window(
    active: list[schemas.Task], start: datetime.datetime, end: datetime.datetime, allow_seconds: bool
) -> Upcoming:
    runs: list[UpcomingRun] = []
    truncated: list[str] = []
    for task in active:
        ticks: list[UpcomingRun] = []
        at = start
        while len(ticks) <= UPCOMING_PER_TASK:
            try:
                at = cron.next_tick(task.schedule, task.timeZone, at, allow_seconds=allow_seconds)
            except cron.ScheduleError:
                break  # the operator does not schedule it either (Ready=False)
            if at > end:
                break
            ticks.append(UpcomingRun(taskId=task.id, name=task.name, at=at))
        if len(ticks) > UPCOMING_PER_TASK:
            truncated.append(task.id)
        runs.extend(ticks[:UPCOMING_PER_TASK])
    runs.sort(key=lambda run: run.at)
    return Upcoming(start=start, end=end, runs=runs, truncated=truncated)


def heartbeat_status(facade: Facade, namespace: str) -> HeartbeatStatus:
    facade.require_cluster()
    body = facade.heartbeats.get(namespace, models.HEARTBEAT_NAME)
    status = models.StanHeartbeatStatus.model_validate((body or {}).get("status") or {})
    return HeartbeatStatus(
        lastRunAt=status.lastRunAt,
        nextRunAt=status.nextRunAt,
        healthy=status.healthy,
        results=[schemas.CheckResult.model_validate(result.model_dump()) for result in status.results],
    )
