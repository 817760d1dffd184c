"""The ledger of ticks that ran: spans joined and bounded, ticks of any schedule found in them."""

from __future__ import annotations

import datetime

from stan_core import backfill, ledger, models

UTC = datetime.UTC
HOURLY = models.StanTaskSpec(name="n", action="a", schedule="0 * * * *", modelId="m")


def at(hour: int, minute: int = 0, day: int = 1) -> datetime.datetime:
    return datetime.datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def record(
    status: models.StanTaskStatus, tick: datetime.datetime, spec: models.StanTaskSpec = HOURLY
) -> models.StanTaskStatus:
    """The status as the claim that records ``tick`` leaves it."""
    fields = ledger.recorded(status, spec, tick, False)
    return models.StanTaskStatus.model_validate({**status.model_dump(mode="json", by_alias=True), **fields})


def spans(status: models.StanTaskStatus) -> list[tuple[datetime.datetime, datetime.datetime]]:
    return [(span.first, span.last) for span in status.ranTicks]


def test_consecutive_ticks_make_one_span_and_a_gap_another() -> None:
    status = models.StanTaskStatus()
    for hour in (10, 11, 12, 15):
        status = record(status, at(hour))
    assert spans(status) == [(at(10), at(12)), (at(15), at(15))]
    assert ledger.ran(status, at(11), False) and not ledger.ran(status, at(13), False)


def test_backfilled_ticks_fill_a_gap_and_join_its_spans() -> None:
    status = models.StanTaskStatus()
    for hour in (10, 13, 11, 12):
        status = record(status, at(hour))
    assert spans(status) == [(at(10), at(13))]


def test_a_tick_of_another_schedule_ran_only_if_the_span_s_schedule_has_it() -> None:
    status = record(record(models.StanTaskStatus(), at(10)), at(11))
    assert ledger.ran(status, at(10), False)
    assert not ledger.ran(status, at(10, 30), False), "10:30 is no tick of the hourly span"
    half_hourly = HOURLY.model_copy(update={"schedule": "*/30 * * * *"})
    status = record(status, at(11, 30), half_hourly)
    assert spans(status) == [(at(10), at(11)), (at(11, 30), at(11, 30))], "another schedule starts its own span"


def test_beyond_the_bound_the_oldest_spans_go_and_ran_ticks_since_moves() -> None:
    status = models.StanTaskStatus()
    days = [at(10) + datetime.timedelta(days=day) for day in range(models.MAX_TICK_SPANS + 2)]
    for day in days:
        status = record(status, day)
    assert len(status.ranTicks) == models.MAX_TICK_SPANS
    assert status.ranTicksSince == days[1], "the two oldest spans went"


def test_a_range_is_refused_with_the_field_and_the_reason() -> None:
    status = models.StanTaskStatus(lastScheduledAt=at(12), ranTicksSince=at(1))

    def refused(start: datetime.datetime, end: datetime.datetime) -> tuple[str, str] | None:
        return backfill.refusal(HOURLY, status, start, end, at(12), False)

    assert refused(at(10), at(9)) == ("to", "must be after from")
    assert refused(at(13), at(14)) == (
        "from",
        "must be at or before 2026-03-01T12:00:00Z: later ticks are still the schedule's to run",
    )
    assert refused(at(0, 30), at(3))[0] == "from", "before the ledger's start"
    assert refused(at(10, 10), at(10, 50)) == ("to", "the schedule has no tick in the range")
    assert refused(at(2), at(12)) is None
    later = at(0) + datetime.timedelta(days=50)
    many = models.StanTaskStatus(lastScheduledAt=later)
    assert backfill.refusal(HOURLY, many, at(0), later, later, False) == (
        "to",
        "the range holds more than 1000 ticks; backfill it in parts of at most 1000",
    )
