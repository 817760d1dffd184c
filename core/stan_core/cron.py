"""Cron schedules in a time zone: validation and the ticks they produce.

Every tick is computed in the task's IANA zone, so that DST transitions follow
the wall clock, and is returned in UTC, which is what status and the REST
contract carry. A wall time that spring-forward skips runs at the first
instant after the gap. In the hour that fall-back repeats, a schedule with a
fixed hour runs once, while one whose hour field is ``*`` keeps its interval
(Vixie cron's rule), so nothing fires twice for the same wall-clock time.

The shorthands of batch/v1 CronJob (``@daily`` and its kin) are read as the
five-field expressions they stand for, before anything else looks at the
schedule, so that they tick exactly as those do. ``@reboot`` and ``@every`` are
refused: a task has no boot, and an interval that ignores the wall clock would
not follow the task's zone.
"""

from __future__ import annotations

import datetime
import functools
import zoneinfo

from croniter import croniter
from croniter.croniter import CroniterError

UTC = datetime.UTC
STANDARD_FIELDS = 5
SECONDS_FIELDS = 6
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""CronJob's shorthands and the expressions they stand for."""


class ScheduleError(ValueError):
    """A schedule or time zone that can never work; the message is for people."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@functools.cache
def _known_zones() -> frozenset[str]:
    """Listed once: listing walks the folders of the time zone database. ``localtime`` is the host's
    own zone where a database lists it, so the facade and the operator could read it differently."""
    return frozenset(zoneinfo.available_timezones()) - {"localtime"}


def zone(name: str) -> zoneinfo.ZoneInfo:
    """The zone of an IANA name, looked up in the list of zones rather than by opening the file that
    ``ZoneInfo`` would: a folder of the tz database (``America``), a path or an over-long name would
    otherwise fail in the file system, with errors that are not the user's to read."""
    zones = _known_zones()
    if name not in zones:
        raise ScheduleError("timeZone", _unknown_zone(name, zones))
    return zoneinfo.ZoneInfo(name)


def _unknown_zone(name: str, zones: frozenset[str]) -> str:
    member = min((known for known in zones if known.startswith(f"{name}/")), default=None)
    if member is not None:
        return f"{name!r} is a group of time zones, not a zone; use one of them, such as {member!r}"
    return f"unknown time zone {name!r}; use an IANA name such as 'UTC' or 'Europe/Berlin'"


def expand(expression: str) -> str:
    """The five-field form of a shorthand; any other expression as it is. An unknown shorthand is refused
    here with the known ones, rather than by croniter, which knows a different set."""
    if not expression.startswith("@"):
        return expression
    macro = expression.strip().lower()
    if macro in MACROS:
        return MACROS[macro]
    if macro == "@reboot":
        reason = "'@reboot' is not supported: a task runs on a schedule, and has no boot"
    elif macro.startswith("@every"):
        reason = f"{expression!r} is not supported: use a cron expression such as '*/15 * * * *'"
    else:
        reason = f"unknown shorthand {expression!r}; use one of {', '.join(MACROS)}"
    raise ScheduleError("schedule", reason)


def _iterator(expression: str, tz: zoneinfo.ZoneInfo, start: datetime.datetime, *, allow_seconds: bool) -> croniter:
    fields = expression.split()
    allowed = (STANDARD_FIELDS, SECONDS_FIELDS) if allow_seconds else (STANDARD_FIELDS,)
    if len(fields) not in allowed:
        expected = "5 fields (minute hour day-of-month month day-of-week)"
        if allow_seconds:
            expected += ", or 6 with seconds first"
        raise ScheduleError(
            "schedule", f"invalid cron expression {expression!r}: expected {expected}, got {len(fields)}"
        )
    try:
        return croniter(expression, start.astimezone(tz), second_at_beginning=len(fields) == SECONDS_FIELDS)
    except CroniterError as error:
        raise ScheduleError("schedule", f"invalid cron expression {expression!r}: {error}") from None


def validate(expression: str, time_zone: str, *, allow_seconds: bool = False) -> None:
    """Raise ScheduleError unless the schedule parses and fires at least once."""
    next_tick(expression, time_zone, datetime.datetime.now(UTC), allow_seconds=allow_seconds)


def _repeats_wall_time(expression: str, tick: datetime.datetime, tz: zoneinfo.ZoneInfo) -> bool:
    """True for the second occurrence of a fixed-hour tick in the hour that fall-back repeats."""
    fields = expression.split()
    hour = fields[2] if len(fields) == SECONDS_FIELDS else fields[1]
    local = tick.astimezone(tz)
    ambiguous = local.replace(fold=0).utcoffset() != local.replace(fold=1).utcoffset()
    return hour != "*" and ambiguous and local.fold == 1


@functools.lru_cache(maxsize=16384)
def _step(
    expression: str, time_zone: str, start: datetime.datetime, *, forward: bool, allow_seconds: bool
) -> datetime.datetime:
    """Remembered: thousands of tasks share a schedule and a tick, and each step costs croniter ~0.1 ms."""
    tz = zone(time_zone)
    expression = expand(expression)
    iterator = _iterator(expression, tz, start, allow_seconds=allow_seconds)
    try:
        while True:
            found: datetime.datetime = (iterator.get_next if forward else iterator.get_prev)(datetime.datetime)
            tick = found.astimezone(UTC)
            if not _repeats_wall_time(expression, tick, tz):
                return tick
    except CroniterError:
        raise ScheduleError("schedule", f"cron expression {expression!r} never fires") from None


def next_tick(
    expression: str, time_zone: str, after: datetime.datetime, *, allow_seconds: bool = False
) -> datetime.datetime:
    """The first tick strictly after ``after``, in UTC."""
    return _step(expression, time_zone, after, forward=True, allow_seconds=allow_seconds)


def previous_tick(
    expression: str, time_zone: str, at: datetime.datetime, *, allow_seconds: bool = False
) -> datetime.datetime:
    """The latest tick at or before ``at``, in UTC."""
    return _step(
        expression, time_zone, at + datetime.timedelta(microseconds=1), forward=False, allow_seconds=allow_seconds
    )
