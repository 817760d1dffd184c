"""The tick rules: when a task fires, which ticks it owes, which it skips and why.

Pure functions of the spec, what status records, and ``now``, which the caller
passes in (as the CronJob controller's schedule maths takes it): no clock is
read and nothing is written here, so every rule is tested on instants the test
chooses, DST transitions and restarts included.
"""

from __future__ import annotations

import datetime

from stan_core import models, schedule

"""The schedule maths lives in the core, so that the facade lists upcoming runs by the same rules."""


def baseline(
    last_scheduled: datetime.datetime | None, created: datetime.datetime, *, resumed: bool, now: datetime.datetime
) -> datetime.datetime:
    """The instant up to which ticks are accounted for: a resumed task owes nothing of its pause, a task
    that never fired owes what came since it was created."""
    if resumed:
        return now
    return last_scheduled if last_scheduled is not None else created


def first_tick(
    plan: schedule.Schedule, accounted_until: datetime.datetime, now: datetime.datetime
) -> datetime.datetime | None:
    """The tick to fire first when a task is seen (operator start, creation): the latest one missed since
    ``accounted_until``, if any, else the next one; None when its window has ended. Only the latest missed
    tick is owed, as batch/v1 CronJob does; whether it still runs is ``skip_reason``'s to say."""
    tick = plan.after(accounted_until)
    return tick if tick is None or tick > now else plan.at_or_before(now)


def next_after_change(
    plan: schedule.Schedule, accounted_until: datetime.datetime, now: datetime.datetime
) -> datetime.datetime | None:
    """After a change of spec: the new schedule from now on, never a tick already accounted for."""
    return plan.after(max(now, accounted_until))


def late_by(tick: datetime.datetime, now: datetime.datetime) -> float:
    return (now - tick).total_seconds()


def past_deadline(tick: datetime.datetime, now: datetime.datetime, deadline_seconds: int) -> bool:
    return late_by(tick, now) > deadline_seconds


def following(
    plan: schedule.Schedule, tick: datetime.datetime, now: datetime.datetime, deadline_seconds: int
) -> datetime.datetime | None:
    """The tick after one that fires at ``now``: the schedule's next, unless this one came past its deadline
    (the operator was away), when the schedule goes on from now rather than tick by tick through the gap."""
    return plan.after(now if past_deadline(plan.due(tick), now, deadline_seconds) else tick)


FORBIDDEN = "the previous run is still active (concurrencyPolicy: Forbid)"
ALREADY_WAITING = "a run is going and another already waits for it to end (concurrencyPolicy: BufferOne)"
WAITING = "waiting for the run going on to end (concurrencyPolicy: BufferOne)"


def skip_reason(
    spec: models.StanTaskSpec, due: datetime.datetime, now: datetime.datetime, *, busy: bool, waiting: bool = False
) -> str | None:
    """Why a tick due at ``due`` (jitter included) does not run, or None when it runs; ``busy``: a run of
    the task is still going; ``waiting``: another run already waits for it."""
    late = late_by(due, now)
    if late > spec.startingDeadlineSeconds:
        return (
            f"missed by {late:.0f}s, more than startingDeadlineSeconds ({spec.startingDeadlineSeconds}); "
            "the operator was not running at the tick"
        )
    return request_refusal(spec, busy=busy, waiting=waiting)


def request_refusal(spec: models.StanTaskSpec, *, busy: bool, waiting: bool = False) -> str | None:
    """Why a run asked for now (or a due tick) may not start while another runs, or None."""
    if not busy:
        return None
    if spec.concurrencyPolicy == models.ConcurrencyPolicy.FORBID.value:
        return FORBIDDEN
    if spec.concurrencyPolicy == models.ConcurrencyPolicy.BUFFER_ONE.value and waiting:
        return ALREADY_WAITING
    return None


def waits(spec: models.StanTaskSpec, *, busy: bool) -> bool:
    """Whether a run that may start (``request_refusal`` is None) first waits for the one going on."""
    return busy and spec.concurrencyPolicy == models.ConcurrencyPolicy.BUFFER_ONE.value


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


def failure_streak(runs: list[models.Run], since: datetime.datetime | None = None) -> int:
    """How many of the latest finished runs (newest first), scheduled from ``since`` on, failed in a row;
    skipped ticks neither count nor end a streak, since nothing ran."""
    streak = 0
    for run in runs:
        if since is not None and run.scheduledAt < since:
            break
        if run.result == models.RunResult.FAILED:
            streak += 1
        elif run.result == models.RunResult.SUCCEEDED:
            break
    return streak


def bounded(runs: list[models.Run], limit: int) -> list[models.Run]:
    """The newest ``limit`` runs, plus older ones still running, whose results are yet to be written."""
    return runs[:limit] + [run for run in runs[limit:] if run.result == models.RunResult.RUNNING]


def remaining_runs(spec: models.StanTaskSpec, remaining: int | None, previous_max: int | None) -> int | None:
    """``status.remainingRuns`` for a spec just taken in: a new or changed maxRuns counts afresh from it, an
    unchanged one goes on with what is left, and without maxRuns there is no count."""
    if spec.maxRuns is None:
        return None
    if remaining is None or previous_max != spec.maxRuns:
        return spec.maxRuns
    return min(remaining, spec.maxRuns)


def counted(remaining: int | None, run: models.Run) -> int | None:
    """What remains after a tick's run is claimed: a skipped tick ran nothing, so it uses up no run."""
    if remaining is None or run.result == models.RunResult.SKIPPED.value:
        return remaining
    return max(remaining - 1, 0)


def finish_reason(spec: models.StanTaskSpec, remaining: int | None, next_tick: datetime.datetime | None) -> str | None:
    """Why a task fires no more (its maxRuns used up, or its endAt passed), or None while it has a next tick."""
    if remaining == 0:
        return f"all {spec.maxRuns} runs of maxRuns have been scheduled; the task fires no more"
    if next_tick is None and spec.endAt is not None:
        return f"no tick is left before endAt ({models.format_timestamp(spec.endAt)}); the task fires no more"
    return None


def outcome_times(run: models.Run) -> dict[str, str]:
    """The status fields that keep, beyond the pruned run history, when a run last succeeded or failed."""
    if run.finishedAt is None:
        return {}
    field = {models.RunResult.SUCCEEDED.value: "lastSuccessfulAt", models.RunResult.FAILED.value: "lastFailedAt"}
    return {field[run.result]: models.format_timestamp(run.finishedAt)} if run.result in field else {}


def pause_for_failures(spec: models.StanTaskSpec, status: models.StanTaskStatus) -> str | None:
    """The note to pause a task with, once pauseAfterFailures runs since its last resume failed in a row;
    None while it runs on."""
    limit = spec.pauseAfterFailures
    if limit is None or spec.paused or failure_streak(status.recentRuns, status.resumedAt) < limit:
        return None
    last = next(run.message for run in status.recentRuns if run.result == models.RunResult.FAILED)
    return f"paused after {limit} failed runs in a row (pauseAfterFailures); the last: {last}"[: models.MAX_NOTE_LENGTH]


def tells(setting: str, reason: str, runs: list[models.Run], run_id: str) -> bool:
    """Whether a run's Event (``reason``: Fired, Waiting, Succeeded, Failed, Skipped) is posted under the
    operator's runEvents: all; failures and state changes (a failed or skipped run, a success after anything
    but a success, or the first); none. ``runs`` is status's history, holding the run."""
    if setting in ("all", "none"):
        return setting == "all"
    if reason in ("Failed", "Skipped"):
        return True
    if reason != "Succeeded":
        return False
    index = next((index for index, run in enumerate(runs) if run.runId == run_id), len(runs))
    ended = (models.RunResult.SUCCEEDED, models.RunResult.FAILED)
    previous = next((run for run in runs[index + 1 :] if run.result in ended), None)
    return previous is None or previous.result != models.RunResult.SUCCEEDED
