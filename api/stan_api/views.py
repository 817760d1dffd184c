"""StanTask objects as the REST contract shows them: pure translations, no I/O.

A task's summary is rendered to JSON once per watch event (the facade's
cache keeps it), so that a list answer is a join of stored bytes, not a
thousand models built and serialized per request.
"""

from __future__ import annotations

import datetime

from stan_api import schemas
from stan_core import ids, models

TASK_NOTIFICATION_FIELDS = ("notify", "repeatIntervalSeconds", "failureThreshold", "deadManGraceSeconds")
HEARTBEAT_NOTIFICATION_FIELDS = ("notify", "repeatIntervalSeconds")
TASK_SCHEDULE_FIELDS = ("jitterSeconds", "startAt", "endAt", "maxRuns", "pauseAfterFailures")
TASK_OUTCOME_FIELDS = ("remainingRuns", "lastSuccessfulAt", "lastFailedAt", "pausedAt", "pauseNote")


def notification_fields(spec: dict, names: tuple[str, ...]) -> dict:
    """A spec's notification settings for an answer: none for an object that does not notify, so that
    it keeps the documented shape. Targets show as given: an inline URL, or the Secret's name and key,
    never a Secret's value."""
    if not spec.get("notify"):
        return {}
    return {name: spec[name] for name in names if spec.get(name) is not None}


def schedule_fields(spec: dict, status: models.StanTaskStatus) -> dict:
    """The scheduling additions a task uses, and what status says of them: only those set (a jitter of 0
    is none), so that a task without them keeps the documented shape."""
    shown = {name: spec[name] for name in TASK_SCHEDULE_FIELDS if spec.get(name)}
    return shown | {name: value for name in TASK_OUTCOME_FIELDS if (value := getattr(status, name)) is not None}


def task_status(body: dict) -> models.StanTaskStatus:
    return models.StanTaskStatus.model_validate(body.get("status") or {})


def _state(body: dict) -> str:
    return (body.get("status") or {}).get("status") or ("paused" if body["spec"].get("paused") else "active")


def summary(body: dict) -> schemas.TaskSummary:
    spec = body["spec"]
    return schemas.TaskSummary(
        id=ids.task_id(body["metadata"]["name"]),
        name=spec["name"],
        action=spec["action"],
        schedule=spec["schedule"],
        modelId=spec["modelId"],
        status=_state(body),
    )


def summary_json(body: dict) -> bytes:
    return summary(body).model_dump_json().encode()


def full(body: dict) -> schemas.Task:
    spec = body["spec"]
    status = task_status(body)
    return schemas.Task(
        **summary(body).model_dump(),
        createdAt=datetime.datetime.fromisoformat(body["metadata"]["creationTimestamp"]),
        lastRunAt=status.lastRunAt,
        nextRunAt=status.nextRunAt,
        timeZone=spec.get("timeZone", "UTC"),
        concurrencyPolicy=spec.get("concurrencyPolicy", "Allow"),
        **notification_fields(spec, TASK_NOTIFICATION_FIELDS),
        **schedule_fields(spec, status),
    )
