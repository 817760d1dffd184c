"""Cron ticks in a time zone, DST included, and the reasons a schedule is refused."""

from __future__ import annotations

import datetime

import pytest

from stan_core import cron

UTC = datetime.UTC


def at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).astimezone(UTC)


def test_next_tick_is_read_in_the_tasks_zone() -> None:
    assert cron.next_tick("0 9 * * *", "Europe/Berlin", at("2026-01-15T10:00:00Z")) == at("2026-01-16T08:00:00Z")
    assert cron.next_tick("0 9 * * *", "UTC", at("2026-01-15T08:59:59Z")) == at("2026-01-15T09:00:00Z")


def test_a_tick_is_strictly_after() -> None:
    assert cron.next_tick("0 9 * * *", "UTC", at("2026-01-15T09:00:00Z")) == at("2026-01-16T09:00:00Z")


def test_daylight_saving_time_follows_the_wall_clock() -> None:
    # Europe/Berlin: 2026-03-29 02:00 -> 03:00, 2026-10-25 03:00 -> 02:00.
    before_spring = cron.next_tick("30 9 * * *", "Europe/Berlin", at("2026-03-28T12:00:00Z"))
    after_spring = cron.next_tick("30 9 * * *", "Europe/Berlin", before_spring)
    assert (before_spring, after_spring) == (at("2026-03-29T07:30:00Z"), at("2026-03-30T07:30:00Z"))
    skipped_wall_time = cron.next_tick("30 2 * * *", "Europe/Berlin", at("2026-03-28T12:00:00Z"))
    assert skipped_wall_time == at("2026-03-29T01:00:00Z"), "02:30 does not exist that day; it runs at 03:00"
    first = cron.next_tick("30 2 * * *", "Europe/Berlin", at("2026-10-24T12:00:00Z"))
    assert first == at("2026-10-25T00:30:00Z")
    assert cron.next_tick("30 2 * * *", "Europe/Berlin", first) == at("2026-10-26T01:30:00Z"), (
        "a fixed hour runs once in the repeated hour"
    )
    hourly = cron.next_tick("30 * * * *", "Europe/Berlin", first)
    assert hourly == at("2026-10-25T01:30:00Z"), "an hourly schedule keeps its interval through the repeated hour"


def test_previous_tick_includes_the_instant_itself() -> None:
    assert cron.previous_tick("*/5 * * * *", "UTC", at("2026-01-15T09:10:00Z")) == at("2026-01-15T09:10:00Z")
    assert cron.previous_tick("*/5 * * * *", "UTC", at("2026-01-15T09:14:59Z")) == at("2026-01-15T09:10:00Z")


def test_seconds_only_when_allowed() -> None:
    with pytest.raises(cron.ScheduleError, match="expected 5 fields"):
        cron.validate("*/5 * * * * *", "UTC")
    assert cron.next_tick("*/5 * * * * *", "UTC", at("2026-01-15T09:00:01Z"), allow_seconds=True) == at(
        "2026-01-15T09:00:05Z"
    )


@pytest.mark.parametrize(
    ("expression", "zone", "field", "reason"),
    [
        ("61 * * * *", "UTC", "schedule", "invalid cron expression"),
        ("every day", "UTC", "schedule", "expected 5 fields"),
        ("0 0 30 2 *", "UTC", "schedule", "never fires"),
        ("0 9 * * *", "Mars/Olympus", "timeZone", "unknown time zone 'Mars/Olympus'"),
        ("0 9 * * *", "../etc/passwd", "timeZone", "unknown time zone"),
    ],
)
def test_refused_schedules_name_the_field_and_reason(expression: str, zone: str, field: str, reason: str) -> None:
    with pytest.raises(cron.ScheduleError) as refused:
        cron.validate(expression, zone)
    assert refused.value.field == field
    assert reason in refused.value.reason
