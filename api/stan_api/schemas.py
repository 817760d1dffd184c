"""The request and response bodies of the Stan Tasks & Heartbeat API, camelCase as documented.

Fields the contract names come first and keep its names; what Stan adds
(time zone, concurrency policy, run history) is optional and sits beside them.
"""

from __future__ import annotations

import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from stan_core import models

Text = Annotated[str, StringConstraints(min_length=1, max_length=253), models.PRINTABLE]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Notifying(BaseModel):
    """Stan addition: where notifications go, as the README's "Notifications" describes. In an answer,
    present only for an object that notifies, so that every other keeps the documented shape."""

    notify: list[models.NotifyTarget] | None = Field(default=None, max_length=models.MAX_NOTIFY_TARGETS)
    repeatIntervalSeconds: int | None = Field(
        default=None, ge=60, le=7 * 86400, description="While failing or unhealthy, remind this often."
    )


class TaskNotifying(Notifying):
    failureThreshold: int | None = Field(default=None, ge=1, le=100, description="Failed runs in a row to notify.")
    deadManGraceSeconds: int | None = Field(
        default=None, ge=1, le=30 * 86400, description="Notify when no run has succeeded this long past a tick."
    )


class TaskSummary(BaseModel):
    id: str = Field(examples=["task_abc001"])
    name: str
    action: str
    schedule: str
    modelId: str
    status: str = Field(description="active or paused")


class Task(TaskNotifying, TaskSummary):
    """The full Scheduled Task object."""

    createdAt: models.Timestamp
    lastRunAt: models.Timestamp | None
    nextRunAt: models.Timestamp | None
    timeZone: str = Field(description="Stan addition: the IANA zone the schedule is read in.")
    concurrencyPolicy: str = Field(description="Stan addition: Allow, Forbid, Replace or BufferOne.")
    jitterSeconds: int | None = Field(default=None, description="Stan addition, shown when set.")
    startAt: models.Timestamp | None = Field(default=None, description="Stan addition, shown when set.")
    endAt: models.Timestamp | None = Field(default=None, description="Stan addition, shown when set.")
    maxRuns: int | None = Field(default=None, description="Stan addition, shown when set.")
    pauseAfterFailures: int | None = Field(default=None, description="Stan addition, shown when set.")
    pausedAt: models.Timestamp | None = Field(default=None, description="Stan addition: when it was paused.")
    pauseNote: str | None = Field(default=None, description="Stan addition: why it is paused, when a note was given.")
    remainingRuns: int | None = Field(default=None, description="Stan addition: with maxRuns, the runs to come.")
    lastSuccessfulAt: models.Timestamp | None = Field(default=None, description="Stan addition, shown when set.")
    lastFailedAt: models.Timestamp | None = Field(default=None, description="Stan addition, shown when set.")


class TaskExtras(TaskNotifying, Body):
    """Optional scheduling and notification fields Stan adds to the contract. In a PUT, null resets a field
    to its default (none, for those without one)."""

    timeZone: Text | None = Field(default=None, examples=["Europe/Berlin"])
    concurrencyPolicy: models.ConcurrencyPolicy | None = None
    startingDeadlineSeconds: int | None = Field(default=None, ge=0, le=86400)
    runHistoryLimit: int | None = Field(default=None, ge=1, le=100)
    jitterSeconds: int | None = Field(default=None, ge=0, le=models.MAX_JITTER_SECONDS)
    startAt: models.Timestamp | None = None
    endAt: models.Timestamp | None = None
    maxRuns: int | None = Field(default=None, ge=1, le=1_000_000)
    pauseAfterFailures: int | None = Field(default=None, ge=1, le=100)


class TaskCreate(TaskExtras):
    name: Text = Field(examples=["Daily workflow audit"])
    action: Text = Field(examples=["audit_workflows"])
    schedule: Text = Field(examples=["0 9 * * *"])
    modelId: Text = Field(examples=["model_abc123"])


class TaskUpdate(TaskExtras):
    name: Text | None = None
    action: Text | None = None
    schedule: Text | None = None
    modelId: Text | None = None

    @field_validator("name", "action", "schedule", "modelId")
    @classmethod
    def _kept(cls, value: str | None) -> str:
        if value is None:
            raise ValueError("may be left out, but not null: a task always has one")
        return value


class PauseRequest(Body):
    """Stan addition: the optional body of POST /tasks/{id}/pause."""

    note: Text | None = Field(
        default=None, max_length=models.MAX_NOTE_LENGTH, examples=["paused during the database migration"]
    )


class Updated(BaseModel):
    updated: bool = True


class Paused(BaseModel):
    paused: bool = True


class Resumed(BaseModel):
    resumed: bool = True


class RunTriggered(BaseModel):
    """Stan addition: the answer to POST /tasks/{id}/run."""

    runId: str
    result: str
    message: str


class Run(BaseModel):
    """Stan addition: one recent run of a task."""

    runId: str
    scheduledAt: models.Timestamp
    startedAt: models.Timestamp | None
    finishedAt: models.Timestamp | None
    result: str
    message: str


class UpcomingRuns(BaseModel):
    """Stan addition: when a task's next runs are due, jitter, window and maxRuns applied."""

    id: str
    runs: list[models.Timestamp] = Field(description="Soonest first; empty while paused or finished.")


class BackfillRequest(Body):
    """Stan addition: the body of POST /tasks/{id}/backfill, a past range whose ticks run once each."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    start: models.Timestamp = Field(alias="from", examples=["2026-03-01T00:00:00Z"])
    end: models.Timestamp = Field(alias="to", examples=["2026-03-02T00:00:00Z"])


class Backfill(BaseModel):
    """Stan addition: a backfill as the operator took it up; the runs go on in the background."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(description="The task's id.")
    request: str
    start: models.Timestamp = Field(alias="from")
    end: models.Timestamp = Field(alias="to", description="The range's end, at most the last tick accounted for.")
    ticks: int = Field(description="Ticks of the range that had not run: these run, oldest first.")
    alreadyRan: int = Field(description="Ticks of the range left out because they had run.")
    handled: int = Field(description="Ticks handled so far.")
    finishedAt: models.Timestamp | None


class Action(BaseModel):
    """Stan addition: an action a task may use."""

    name: str
    kind: str = Field(description="builtin (runs in the operator) or job (runs as a Kubernetes Job)")


class Heartbeat(Notifying):
    enabled: bool
    checks: list[str]
    intervalMinutes: int
    availableChecks: list[str]


class HeartbeatUpdate(Notifying, Body):
    enabled: bool | None = None
    checks: list[Text] | None = Field(
        default=None, max_length=models.MAX_CHECKS, description="Each check at most once."
    )
    intervalMinutes: int | None = Field(default=None, ge=5, le=10080, description="Minimum: 5.")


class CheckResult(BaseModel):
    check: str
    status: str = Field(description="ok, warn or error")
    message: str
    durationSeconds: float | None = Field(default=None, description="Stan addition.")
    details: list[str] = Field(default_factory=list, description="Stan addition.")


class HeartbeatRun(BaseModel):
    results: list[CheckResult]
    issues: list[CheckResult]
    healthy: bool


class HeartbeatRecord(BaseModel):
    """A past heartbeat run (Stan addition)."""

    startedAt: datetime.datetime
    durationSeconds: float
    healthy: bool
    checks: dict[str, str] = Field(description="Each check's status: ok, warn or error.")
    issues: list[str]
    onDemand: bool = Field(description="Run on request rather than on the interval.")


class Error(BaseModel):
    detail: str | list[dict]
