"""The tick rules on instants the tests choose: no clock, no API server."""

from __future__ import annotations

import datetime

import pytest

from stan_core import models
from stan_operator import ticks

UTC = datetime.UTC
HOURLY = ticks.Schedule("0 * * * *", "UTC")
NINE_IN_BERLIN = ticks.Schedule("0 9 * * *", "Europe/Berlin")


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
    every_five = ticks.Schedule("*/5 * * * *", "UTC")
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
    at_half_past_two = ticks.Schedule("30 2 * * *", "Europe/Berlin")
    tick = ticks.first_tick(at_half_past_two, at("2026-03-28 12:00"), at("2026-03-28 12:00"))
    assert tick == at("2026-03-29 01:00"), "02:30 does not exist that night: 03:00 CEST"
    assert ticks.following(at_half_past_two, tick, tick, 300) == at("2026-03-30 00:30"), "02:30 CEST"


def test_fall_back_runs_a_fixed_hour_once_and_an_hourly_schedule_every_hour() -> None:
    # 2026-10-25 in Berlin: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    at_half_past_two = ticks.Schedule("30 2 * * *", "Europe/Berlin")
    first = ticks.following(at_half_past_two, at("2026-10-24 00:30"), at("2026-10-24 00:30"), 300)
    assert first == at("2026-10-25 00:30")
    assert ticks.following(at_half_past_two, first, first, 300) == at("2026-10-26 01:30"), "not again at 01:30 UTC"
    hourly = ticks.Schedule("30 * * * *", "Europe/Berlin")
    assert ticks.following(hourly, at("2026-10-25 00:30"), at("2026-10-25 00:30"), 300) == at("2026-10-25 01:30")


def test_a_tick_a_day_in_the_tasks_zone() -> None:
    assert ticks.first_tick(NINE_IN_BERLIN, at("2026-07-01 12:00"), at("2026-07-01 12:00")) == at("2026-07-02 07:00"), (
        "09:00 CEST"
    )
    assert ticks.first_tick(NINE_IN_BERLIN, at("2026-12-01 12:00"), at("2026-12-01 12:00")) == at("2026-12-02 08:00"), (
        "09:00 CET"
    )
