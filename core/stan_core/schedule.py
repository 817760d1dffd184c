"""When a task runs: its cron ticks within its window, each delayed by its jitter.

Pure functions of the spec, the task's uid and instants the caller passes in,
shared by the operator (which fires the ticks) and the facade (which lists the
upcoming ones), so that both say the same. A *tick* is the nominal instant the
cron expression names; it is what claims, ``lastScheduledAt`` and a run's
``scheduledAt`` record. Its *due* time is the tick plus the jitter, when it
runs and what ``nextRunAt`` shows.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
from collections.abc import Mapping
from typing import Any

from stan_core import cron, models

MAX_UPCOMING = 100


def jitter(uid: str, tick: datetime.datetime, jitter_seconds: int) -> datetime.timedelta:
    """The delay of ``tick``, in [0, jitter_seconds): a hash of the task's uid and the tick, so that every
    replica, and an operator after a restart, delays the same tick by the same amount, while tasks sharing
    a tick spread over the interval. Whole milliseconds, as timestamps are written."""
    if jitter_seconds <= 0:
        return datetime.timedelta(0)
    digest = hashlib.sha256(f"{uid}/{tick.timestamp():.6f}".encode()).digest()
    return datetime.timedelta(milliseconds=int.from_bytes(digest[:8], "big") % (jitter_seconds * 1000))


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A task's cron expression read in its zone, bounded by its window and delayed by its jitter."""

    expression: str
    time_zone: str
    allow_seconds: bool = False
    uid: str = ""
    jitter_seconds: int = 0
    start_at: datetime.datetime | None = None
    end_at: datetime.datetime | None = None

    @classmethod
    def of(cls, spec: models.StanTaskSpec, allow_seconds: bool, uid: str = "") -> Schedule:
        return cls(spec.schedule, spec.timeZone, allow_seconds, uid, spec.jitterSeconds, spec.startAt, spec.endAt)

    def after(self, moment: datetime.datetime) -> datetime.datetime | None:
        """The first tick strictly after ``moment`` within the window; None when the window has ended."""
        if self.start_at is not None and moment < self.start_at:
            moment = self.start_at - datetime.timedelta(microseconds=1)
        tick = cron.next_tick(self.expression, self.time_zone, moment, allow_seconds=self.allow_seconds)
        return tick if self.end_at is None or tick <= self.end_at else None

    def at_or_before(self, moment: datetime.datetime) -> datetime.datetime | None:
        """The latest tick at or before ``moment`` within the window; None when the window has not begun."""
        if self.end_at is not None:
            moment = min(moment, self.end_at)
        tick = cron.previous_tick(self.expression, self.time_zone, moment, allow_seconds=self.allow_seconds)
        return tick if self.start_at is None or tick >= self.start_at else None

    def due(self, tick: datetime.datetime) -> datetime.datetime:
        """When ``tick`` runs."""
        return tick + jitter(self.uid, tick, self.jitter_seconds)


def upcoming(
    schedule: Schedule,
    *,
    now: datetime.datetime,
    accounted_until: datetime.datetime | None,
    count: int,
    remaining_runs: int | None,
) -> list[datetime.datetime]:
    """When the next ``count`` runs are due, after ``now``: ticks not yet accounted for whose due time is
    still to come (a tick already past may still wait out its jitter), within the window and no more than
    the runs that remain."""
    limit = count if remaining_runs is None else min(count, remaining_runs)
    moment = now - datetime.timedelta(seconds=schedule.jitter_seconds)
    if accounted_until is not None:
        moment = max(moment, accounted_until)
    found: list[datetime.datetime] = []
    while len(found) < limit:
        tick = schedule.after(moment)
        if tick is None:
            break
        if schedule.due(tick) > now:
            found.append(schedule.due(tick))
        moment = tick
    return sorted(found)


def upcoming_of_task(
    body: Mapping[str, Any], spec: models.StanTaskSpec, allow_seconds: bool, *, now: datetime.datetime, count: int
) -> list[datetime.datetime]:
    """When a StanTask's next ``count`` runs are due, as the operator will fire them: what its status
    accounts for and the runs it has left applied; none while it is paused."""
    if spec.paused:
        return []
    status = models.StanTaskStatus.model_validate(body.get("status") or {})
    metadata = body["metadata"]
    return upcoming(
        Schedule.of(spec, allow_seconds, metadata["uid"]),
        now=now,
        accounted_until=status.lastScheduledAt or datetime.datetime.fromisoformat(metadata["creationTimestamp"]),
        count=count,
        remaining_runs=status.remainingRuns if status.remainingRuns is not None else spec.maxRuns,
    )
