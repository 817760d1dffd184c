"""The tick rules: when a task fires, which ticks it owes, which it skips and why.

Pure functions of the spec, what status records, and ``now``, which the caller
passes in (as the CronJob controller's schedule maths takes it): no clock is
read and nothing is written here, so every rule is tested on instants the test
chooses, DST transitions and restarts included.
"""

from __future__ import annotations

import dataclasses
import datetime

from stan_core import cron, models


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A task's cron expression read in its zone."""

    expression: str
    time_zone: str
    allow_seconds: bool = False

    @classmethod
    def of(cls, spec: models.StanTaskSpec, allow_seconds: bool) -> Schedule:
        return cls(spec.schedule, spec.timeZone, allow_seconds)

    def after(self, moment: datetime.datetime) -> datetime.datetime:
        """The first tick strictly after ``moment``."""
        return cron.next_tick(self.expression, self.time_zone, moment, allow_seconds=self.allow_seconds)

    def at_or_before(self, moment: datetime.datetime) -> datetime.datetime:
        return cron.previous_tick(self.expression, self.time_zone, moment, allow_seconds=self.allow_seconds)


def baseline(
    last_scheduled: datetime.datetime | None, created: datetime.datetime, *, resumed: bool, now: datetime.datetime
) -> datetime.datetime:
    """The instant up to which ticks are accounted for: a resumed task owes nothing of its pause, a task
    that never fired owes what came since it was created."""
    if resumed:
        return now
    return last_scheduled if last_scheduled is not None else created


def first_tick(schedule: Schedule, accounted_until: datetime.datetime, now: datetime.datetime) -> datetime.datetime:
    """The tick to fire first when a task is seen (operator start, creation): the latest one missed since
    ``accounted_until``, if any, else the next one. Only the latest missed tick is owed, as batch/v1 CronJob
    does; whether it still runs is ``skip_reason``'s to say."""
    tick = schedule.after(accounted_until)
    return tick if tick > now else schedule.at_or_before(now)


def next_after_change(
    schedule: Schedule, accounted_until: datetime.datetime, now: datetime.datetime
) -> datetime.datetime:
    """After a change of spec: the new schedule from now on, never a tick already accounted for."""
    return schedule.after(max(now, accounted_until))


def late_by(tick: datetime.datetime, now: datetime.datetime) -> float:
    return (now - tick).total_seconds()


def past_deadline(tick: datetime.datetime, now: datetime.datetime, deadline_seconds: int) -> bool:
    return late_by(tick, now) > deadline_seconds


def following(
    schedule: Schedule, tick: datetime.datetime, now: datetime.datetime, deadline_seconds: int
) -> datetime.datetime:
    """The tick after one that fires at ``now``: the schedule's next, unless this one came past its deadline
    (the operator was away), when the schedule goes on from now rather than tick by tick through the gap."""
    return schedule.after(now if past_deadline(tick, now, deadline_seconds) else tick)


FORBIDDEN = "the previous run is still active (concurrencyPolicy: Forbid)"


def skip_reason(
    spec: models.StanTaskSpec, tick: datetime.datetime, now: datetime.datetime, *, busy: bool
) -> str | None:
    """Why a due tick does not run, or None when it runs; ``busy``: a run of the task is still going."""
    late = late_by(tick, now)
    if late > spec.startingDeadlineSeconds:
        return (
            f"missed by {late:.0f}s, more than startingDeadlineSeconds ({spec.startingDeadlineSeconds}); "
            "the operator was not running at the tick"
        )
    return request_refusal(spec, busy=busy)


def request_refusal(spec: models.StanTaskSpec, *, busy: bool) -> str | None:
    """Why a run asked for now (or a due tick) may not start while another runs, or None."""
    if spec.concurrencyPolicy == models.ConcurrencyPolicy.FORBID.value and busy:
        return FORBIDDEN
    return None


def replaced(
    spec: models.StanTaskSpec, runs: list[models.Run], before: datetime.datetime, active: set[str]
) -> list[str]:
    """The runs a new tick's run stops under Replace: those of earlier ticks still running here."""
    if spec.concurrencyPolicy != models.ConcurrencyPolicy.REPLACE.value:
        return []
    return [
        run.runId
        for run in runs
        if run.result == models.RunResult.RUNNING and run.scheduledAt < before and run.runId in active
    ]


def failure_streak(runs: list[models.Run]) -> int:
    """How many of the latest finished runs (newest first) failed in a row; skipped ticks neither count
    nor end a streak, since nothing ran."""
    streak = 0
    for run in runs:
        if run.result == models.RunResult.FAILED:
            streak += 1
        elif run.result == models.RunResult.SUCCEEDED:
            break
    return streak


def bounded(runs: list[models.Run], limit: int) -> list[models.Run]:
    """The newest ``limit`` runs, plus older ones still running, whose results are yet to be written."""
    return runs[:limit] + [run for run in runs[limit:] if run.result == models.RunResult.RUNNING]
