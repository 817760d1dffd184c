"""The tick rules on instants the tests choose: no clock, no API server."""

from __future__ import annotations

import datetime

import pytest

from stan_core import cron, models, schedule
from stan_operator import ticks

UTC = datetime.UTC
HOURLY = schedule.Schedule("0 * * * *", "UTC")
NINE_IN_BERLIN = schedule.Schedule("0 9 * * *", "Europe/Berlin")


def at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


def spec(**fields: object) -> models.StanTaskSpec:
    return models.StanTaskSpec.model_validate(
        {"name": "t", "action": "audit_workflows", "schedule": "0 * * * *", "modelId": "m", **fields}
    )


def run(run_id: str, scheduled: str, result: str = "running") -> models.Run:
    return models.Run(runId=run_id, scheduledAt=at(scheduled), result=result)


def test_a_new_task_fires_at_its_next_tick() -> None:
    created = at("2026-03-01 10:20")
    accounted = ticks.baseline(None, created, resumed=False, now=created)
    assert accounted == created
    assert ticks.first_tick(HOURLY, accounted, created) == at("2026-03-01 11:00")


def test_after_a_restart_only_the_latest_missed_tick_is_owed() -> None:
    accounted = at("2026-03-01 06:00")
    now = at("2026-03-01 10:02")
    assert ticks.first_tick(HOURLY, accounted, now) == at("2026-03-01 10:00"), "not 07:00, 08:00 and 09:00"
    assert ticks.skip_reason(spec(), at("2026-03-01 10:00"), now, busy=False) is None, "within the deadline: runs"
    late = ticks.skip_reason(spec(startingDeadlineSeconds=60), at("2026-03-01 10:00"), now, busy=False)
    assert late == ("missed by 120s, more than startingDeadlineSeconds (60); the operator was not running at the tick")


def test_nothing_is_owed_when_nothing_was_missed() -> None:
    assert ticks.first_tick(HOURLY, at("2026-03-01 10:00"), at("2026-03-01 10:30")) == at("2026-03-01 11:00")


def test_a_late_tick_goes_on_from_now_not_through_the_gap() -> None:
    on_time = ticks.following(HOURLY, at("2026-03-01 10:00"), at("2026-03-01 10:00:01"), 300)
    assert on_time == at("2026-03-01 11:00")
    after_an_outage = ticks.following(HOURLY, at("2026-03-01 10:00"), at("2026-03-01 13:10"), 300)
    assert after_an_outage == at("2026-03-01 14:00")
    just_in_time = ticks.following(HOURLY, at("2026-03-01 10:00"), at("2026-03-01 10:04"), 300)
    assert just_in_time == at("2026-03-01 11:00"), "a run within its deadline keeps the schedule"


def test_resume_owes_nothing_of_the_pause() -> None:
    now = at("2026-03-01 10:30")
    accounted = ticks.baseline(at("2026-02-20 00:00"), at("2026-01-01 00:00"), resumed=True, now=now)
    assert accounted == now
    assert ticks.next_after_change(HOURLY, accounted, now) == at("2026-03-01 11:00")


def test_a_schedule_change_takes_effect_from_now() -> None:
    every_five = schedule.Schedule("*/5 * * * *", "UTC")
    assert ticks.next_after_change(every_five, at("2026-03-01 10:00"), at("2026-03-01 10:31")) == at("2026-03-01 10:35")
    assert ticks.next_after_change(every_five, at("2026-03-01 10:40"), at("2026-03-01 10:31")) == at(
        "2026-03-01 10:45"
    ), "never a tick already accounted for"


@pytest.mark.parametrize(
    ("policy", "busy", "reason"),
    [
        ("Allow", True, None),
        ("Allow", False, None),
        ("Forbid", True, ticks.FORBIDDEN),
        ("Forbid", False, None),
        ("Replace", True, None),
        ("Replace", False, None),
    ],
)
def test_concurrency_policies_decide_whether_a_tick_runs(policy: str, busy: bool, reason: str | None) -> None:
    task = spec(concurrencyPolicy=policy)
    assert ticks.skip_reason(task, at("2026-03-01 10:00"), at("2026-03-01 10:00:01"), busy=busy) == reason
    assert ticks.request_refusal(task, busy=busy) == reason


def test_replace_stops_earlier_runs_still_going_here() -> None:
    runs = [
        run("new", "2026-03-01 11:00"),
        run("old", "2026-03-01 10:00"),
        run("done", "2026-03-01 09:00", "succeeded"),
        run("elsewhere", "2026-03-01 08:00"),
    ]
    active = {"new", "old", "done"}
    assert ticks.replaced(spec(concurrencyPolicy="Replace"), runs, at("2026-03-01 11:00"), active) == ["old"]
    assert ticks.replaced(spec(concurrencyPolicy="Allow"), runs, at("2026-03-01 11:00"), active) == []


def test_history_keeps_the_newest_and_every_run_still_going() -> None:
    runs = [
        run("r3", "2026-03-01 03:00", "succeeded"),
        run("r2", "2026-03-01 02:00", "failed"),
        run("r1", "2026-03-01 01:00"),
        run("r0", "2026-03-01 00:00", "succeeded"),
    ]
    assert [kept.runId for kept in ticks.bounded(runs, 2)] == ["r3", "r2", "r1"]


def test_spring_forward_runs_right_after_the_gap() -> None:
    # 2026-03-29 in Berlin: 02:00 CET jumps to 03:00 CEST.
    at_half_past_two = schedule.Schedule("30 2 * * *", "Europe/Berlin")
    tick = ticks.first_tick(at_half_past_two, at("2026-03-28 12:00"), at("2026-03-28 12:00"))
    assert tick == at("2026-03-29 01:00"), "02:30 does not exist that night: 03:00 CEST"
    assert ticks.following(at_half_past_two, tick, tick, 300) == at("2026-03-30 00:30"), "02:30 CEST"


def test_fall_back_runs_a_fixed_hour_once_and_an_hourly_schedule_every_hour() -> None:
    # 2026-10-25 in Berlin: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    at_half_past_two = schedule.Schedule("30 2 * * *", "Europe/Berlin")
    first = ticks.following(at_half_past_two, at("2026-10-24 00:30"), at("2026-10-24 00:30"), 300)
    assert first == at("2026-10-25 00:30")
    assert ticks.following(at_half_past_two, first, first, 300) == at("2026-10-26 01:30"), "not again at 01:30 UTC"
    hourly = schedule.Schedule("30 * * * *", "Europe/Berlin")
    assert ticks.following(hourly, at("2026-10-25 00:30"), at("2026-10-25 00:30"), 300) == at("2026-10-25 01:30")


def test_a_tick_a_day_in_the_tasks_zone() -> None:
    assert ticks.first_tick(NINE_IN_BERLIN, at("2026-07-01 12:00"), at("2026-07-01 12:00")) == at("2026-07-02 07:00"), (
        "09:00 CEST"
    )
    assert ticks.first_tick(NINE_IN_BERLIN, at("2026-12-01 12:00"), at("2026-12-01 12:00")) == at("2026-12-02 08:00"), (
        "09:00 CET"
    )


@pytest.mark.parametrize(("macro", "expression"), sorted(cron.MACROS.items()))
def test_a_shorthand_ticks_as_its_five_field_form(macro: str, expression: str) -> None:
    """In Berlin's wall clock, from before each DST change on."""
    shorthand, spelled = schedule.Schedule(macro, "Europe/Berlin"), schedule.Schedule(expression, "Europe/Berlin")
    for start in (at("2026-03-28 00:00"), at("2026-10-24 00:00")):
        moment_a = moment_b = start
        for _ in range(48):
            next_a, next_b = shorthand.after(moment_a), spelled.after(moment_b)
            assert next_a == next_b is not None
            moment_a, moment_b = next_a, next_b


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("@reboot", "'@reboot' is not supported: a task runs on a schedule, and has no boot"),
        ("@every 5m", "'@every 5m' is not supported: use a cron expression such as '*/15 * * * *'"),
        ("@fortnightly", "unknown shorthand '@fortnightly'; use one of @yearly, @annually, @monthly, @weekly, "),
    ],
)
def test_what_stan_refuses_of_cronjobs_syntax_says_why(expression: str, reason: str) -> None:
    with pytest.raises(cron.ScheduleError, match=r"^schedule: ") as refused:
        cron.validate(expression, "UTC")
    assert refused.value.reason.startswith(reason)


def test_jitter_is_the_same_for_a_tick_everywhere_and_spreads_tasks() -> None:
    tick = at("2026-03-01 10:00")
    delays = {schedule.jitter(f"uid-{n}", tick, 600) for n in range(200)}
    assert all(datetime.timedelta(0) <= delay < datetime.timedelta(seconds=600) for delay in delays)
    assert len(delays) > 150, "tasks sharing a tick are spread"
    assert schedule.jitter("uid-1", tick, 600) == schedule.jitter("uid-1", tick, 600), "every replica agrees"
    assert schedule.jitter("uid-1", tick, 0) == datetime.timedelta(0)
    jittered = schedule.Schedule("0 * * * *", "UTC", uid="uid-1", jitter_seconds=600)
    assert jittered.due(tick) == tick + schedule.jitter("uid-1", tick, 600)
    assert jittered.after(tick) == at("2026-03-01 11:00"), "the ticks themselves stay nominal"


def test_lateness_counts_from_the_jittered_due_time() -> None:
    jittered = schedule.Schedule("0 * * * *", "UTC", uid="uid-1", jitter_seconds=3600)
    tick = at("2026-03-01 10:00")
    due = jittered.due(tick)
    assert ticks.skip_reason(spec(startingDeadlineSeconds=0), due, due, busy=False) is None
    assert ticks.following(jittered, tick, due, 0) == at("2026-03-01 11:00"), "on time, however long the jitter"


WINDOW = schedule.Schedule("0 * * * *", "UTC", start_at=at("2026-03-01 10:30"), end_at=at("2026-03-01 13:00"))


def test_no_tick_outside_the_window() -> None:
    assert ticks.first_tick(WINDOW, at("2026-03-01 08:00"), at("2026-03-01 08:00")) == at("2026-03-01 11:00")
    assert ticks.following(WINDOW, at("2026-03-01 12:00"), at("2026-03-01 12:00"), 300) == at("2026-03-01 13:00")
    assert ticks.following(WINDOW, at("2026-03-01 13:00"), at("2026-03-01 13:00"), 300) is None, "endAt is the last"
    assert ticks.first_tick(WINDOW, at("2026-03-01 13:00"), at("2026-03-01 15:00")) is None
    assert WINDOW.at_or_before(at("2026-03-01 10:45")) is None, "10:00 is before startAt"
    assert ticks.first_tick(WINDOW, at("2026-03-01 11:30"), at("2026-03-01 15:00")) == at("2026-03-01 13:00"), (
        "after an outage the latest missed tick within the window is owed"
    )


def test_max_runs_counts_down_once_per_run_and_finishes() -> None:
    limited = spec(maxRuns=3)
    assert ticks.remaining_runs(limited, None, None) == 3, "a new limit counts from its value"
    assert ticks.remaining_runs(limited, 1, 3) == 1, "an unchanged limit goes on"
    assert ticks.remaining_runs(limited, 1, 5) == 3, "a changed limit counts afresh"
    assert ticks.remaining_runs(spec(), 1, 3) is None
    assert ticks.counted(2, run("r", "2026-03-01 10:00")) == 1
    assert ticks.counted(2, run("r", "2026-03-01 10:00", "skipped")) == 2, "a skipped tick ran nothing"
    assert ticks.counted(None, run("r", "2026-03-01 10:00")) is None
    assert ticks.finish_reason(limited, 0, at("2026-03-01 11:00")) == (
        "all 3 runs of maxRuns have been scheduled; the task fires no more"
    )
    assert ticks.finish_reason(limited, 1, at("2026-03-01 11:00")) is None
    assert ticks.finish_reason(spec(endAt="2026-03-01T13:00:00Z"), None, None) == (
        "no tick is left before endAt (2026-03-01T13:00:00Z); the task fires no more"
    )


def test_outcomes_keep_when_a_run_last_succeeded_or_failed() -> None:
    finished = at("2026-03-01 10:05")
    succeeded = run("r", "2026-03-01 10:00", "succeeded").but(finishedAt=finished)
    failed = run("r", "2026-03-01 10:00", "failed").but(finishedAt=finished)
    assert ticks.outcome_times(succeeded) == {"lastSuccessfulAt": "2026-03-01T10:05:00Z"}
    assert ticks.outcome_times(failed) == {"lastFailedAt": "2026-03-01T10:05:00Z"}
    assert ticks.outcome_times(run("r", "2026-03-01 10:00")) == {}


def test_upcoming_runs_apply_jitter_window_and_limit() -> None:
    now = at("2026-03-01 10:10")
    plain = schedule.upcoming(HOURLY, now=now, accounted_until=None, count=3, remaining_runs=None)
    assert plain == [at("2026-03-01 11:00"), at("2026-03-01 12:00"), at("2026-03-01 13:00")]
    assert schedule.upcoming(WINDOW, now=now, accounted_until=None, count=10, remaining_runs=None) == [
        at("2026-03-01 11:00"),
        at("2026-03-01 12:00"),
        at("2026-03-01 13:00"),
    ]
    assert schedule.upcoming(HOURLY, now=now, accounted_until=None, count=10, remaining_runs=2) == plain[:2]
    jittered = schedule.Schedule("0 * * * *", "UTC", uid="uid-1", jitter_seconds=3600)
    listed = schedule.upcoming(jittered, now=now, accounted_until=at("2026-03-01 09:00"), count=3, remaining_runs=None)
    expected = [jittered.due(tick) for tick in (at(f"2026-03-01 {hour}:00") for hour in (10, 11, 12, 13))]
    assert listed == [due for due in expected if due > now][:3], "a past tick still waiting out its jitter is listed"
    assert schedule.upcoming(
        jittered, now=now, accounted_until=at("2026-03-01 10:00"), count=1, remaining_runs=None
    ) == [expected[1]], "a tick accounted for is not"
