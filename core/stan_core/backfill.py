"""Backfill requests: which past ticks a range holds, and why a range is refused.

Pure, so that the facade refuses a bad request with the same words the
operator records for one made with ``kubectl annotate``.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
from collections.abc import Iterator, Mapping
from typing import Any

from stan_core import cron, ledger, models


@dataclasses.dataclass(frozen=True)
class Request:
    id: str
    start: datetime.datetime
    end: datetime.datetime

    def annotation(self) -> str:
        return json.dumps(
            {"request": self.id, "from": models.format_timestamp(self.start), "to": models.format_timestamp(self.end)}
        )


def requested(metadata: Mapping[str, Any]) -> Request | None:
    """The request the annotation makes; None when there is none or it cannot be read."""
    raw = (metadata.get("annotations") or {}).get(models.BACKFILL_REQUEST_ANNOTATION)
    try:
        fields = json.loads(raw) if raw else None
        if not isinstance(fields, dict):
            return None
        return Request(
            str(fields["request"]),
            datetime.datetime.fromisoformat(fields["from"]).astimezone(datetime.UTC),
            datetime.datetime.fromisoformat(fields["to"]).astimezone(datetime.UTC),
        )
    except (ValueError, KeyError, TypeError):
        return None


def _ticks(
    expression: str, time_zone: str, start: datetime.datetime, end: datetime.datetime, allow_seconds: bool
) -> Iterator[datetime.datetime]:
    tick = cron.next_tick(
        expression, time_zone, start - datetime.timedelta(microseconds=1), allow_seconds=allow_seconds
    )
    while tick <= end:
        yield tick
        tick = cron.next_tick(expression, time_zone, tick, allow_seconds=allow_seconds)


def ticks_in(
    expression: str, time_zone: str, start: datetime.datetime, end: datetime.datetime, allow_seconds: bool, most: int
) -> list[datetime.datetime]:
    """The schedule's ticks from ``start`` to ``end``, both included, oldest first; at most ``most``."""
    return list(itertools.islice(_ticks(expression, time_zone, start, end, allow_seconds), most))


def pending(
    spec: models.StanTaskSpec,
    status: models.StanTaskStatus,
    start: datetime.datetime,
    end: datetime.datetime,
    allow_seconds: bool,
) -> Iterator[datetime.datetime]:
    """The ticks from ``start`` to ``end`` that have not run, oldest first, found as they are asked for."""
    return (
        tick
        for tick in _ticks(spec.schedule, spec.timeZone, start, end, allow_seconds)
        if not ledger.ran(status, tick, allow_seconds)
    )


def accounted_until(status: models.StanTaskStatus, created: datetime.datetime) -> datetime.datetime:
    """Ticks after this are the scheduler's to run or skip; a backfill takes only those up to it."""
    return status.lastScheduledAt or created


def refusal(
    spec: models.StanTaskSpec,
    status: models.StanTaskStatus,
    start: datetime.datetime,
    end: datetime.datetime,
    until: datetime.datetime,
    allow_seconds: bool,
) -> tuple[str, str] | None:
    """The field at fault and why the range is refused, or None; ``until`` is ``accounted_until``."""
    if end <= start:
        return "to", "must be after from"
    if start > until:
        return "from", (
            f"must be at or before {models.format_timestamp(until)}: later ticks are still the schedule's to run"
        )
    if status.ranTicksSince is not None and start <= status.ranTicksSince:
        return "from", (
            f"must be after {models.format_timestamp(status.ranTicksSince)}: which earlier ticks ran is no "
            "longer recorded"
        )
    found = ticks_in(spec.schedule, spec.timeZone, start, min(end, until), allow_seconds, models.MAX_BACKFILL_TICKS + 1)
    if not found:
        return "to", "the schedule has no tick in the range"
    if len(found) > models.MAX_BACKFILL_TICKS:
        return "to", (
            f"the range holds more than {models.MAX_BACKFILL_TICKS} ticks; backfill it in parts of at most "
            f"{models.MAX_BACKFILL_TICKS}"
        )
    return None


def to_run(
    spec: models.StanTaskSpec,
    status: models.StanTaskStatus,
    start: datetime.datetime,
    end: datetime.datetime,
    allow_seconds: bool,
) -> tuple[list[datetime.datetime], int]:
    """The range's ticks that have not run, and how many have."""
    ticks = ticks_in(spec.schedule, spec.timeZone, start, end, allow_seconds, models.MAX_BACKFILL_TICKS)
    pending = [tick for tick in ticks if not ledger.ran(status, tick, allow_seconds)]
    return pending, len(ticks) - len(pending)
