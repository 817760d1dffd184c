"""A cron schedule in words ("every day at 09:00, Europe/Berlin"), for people who watch schedules.

Covers the forms schedules are written in (``*``, values, lists, ranges and
steps, month and day names, seconds first); anything else (croniter's ``L``,
``#``, ``W``, ``?``) is said as the expression itself rather than guessed at,
so the words are never wrong, only sometimes plain.
"""

from __future__ import annotations

import dataclasses
import functools

from stan_core import cron

MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
WEEKDAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
NAMES = {
    name[:3].lower(): number
    for names, first in ((MONTHS, 1), (WEEKDAYS, 0))
    for number, name in enumerate(names, start=first)
}


class Unsaid(ValueError):
    """A field this module does not put into words."""


@dataclasses.dataclass(frozen=True)
class Field:
    """One cron field: ``values`` when it lists values, else every ``step``-th value (``*`` is step 1)."""

    values: tuple[int, ...] = ()
    step: int = 1

    @property
    def every(self) -> bool:
        return not self.values and self.step == 1

    @property
    def single(self) -> int | None:
        return self.values[0] if len(self.values) == 1 else None


def _number(text: str) -> int:
    if text.isdigit():
        return int(text)
    if text.lower() in NAMES:
        return NAMES[text.lower()]
    raise Unsaid(text)


def _field(text: str) -> Field:
    if text == "*":
        return Field()
    if text.startswith("*/") and text[2:].isdigit():
        return Field(step=int(text[2:]))
    values: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        if "/" in part:
            raise Unsaid(part)
        values.extend(range(_number(first), _number(last) + 1) if last else [_number(first)])
    return Field(values=tuple(values))


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _clock(hour: int, minute: int, second: int | None) -> str:
    return f"{hour:02d}:{minute:02d}" + (f":{second:02d}" if second else "")


def _time(second: Field | None, minute: Field, hour: Field) -> str:
    fixed_second = second.single if second is not None else 0
    if hour.values and minute.single is not None and fixed_second is not None:
        return "at " + _and([_clock(h, minute.single, fixed_second) for h in hour.values])
    if second is not None and second.single != 0:
        if second.every:
            return "every second"
        if minute.every and hour.every and not second.values:
            return f"every {second.step} seconds"
        if minute.every and hour.every and second.single is not None:
            return f"every minute at second {second.single}"
        raise Unsaid("seconds")
    if minute.every and hour.every:
        return "every minute"
    if not minute.values and hour.every:
        return f"every {minute.step} minutes"
    if minute.single is not None and not hour.values:
        hours = "every hour" if hour.step == 1 else f"every {hour.step} hours"
        return f"{hours} at minute {minute.single}"
    raise Unsaid("time of day")


def _days(day: Field, month: Field, weekday: Field) -> str:
    """The days a schedule runs on; cron runs on a day that matches the day of the month *or* the weekday."""
    if any(not (field.every or field.values) for field in (day, month, weekday)):
        raise Unsaid("a step in a day field")
    choices = []
    if weekday.values:
        names = [WEEKDAYS[value % 7] for value in weekday.values]
        consecutive = list(weekday.values) == list(range(weekday.values[0], weekday.values[-1] + 1))
        choices.append(
            f"every {names[0]}"
            if len(names) == 1
            else f"{names[0]} to {names[-1]}"
            if consecutive and len(names) > 2
            else _and(names)
        )
    if day.values:
        choices.append(
            ("on day " if len(day.values) == 1 else "on days ")
            + _and([str(d) for d in day.values])
            + ("" if month.values else " of the month")
        )
    said = " or ".join(choices) or "every day"
    return f"{said} in {_and([MONTHS[value - 1] for value in month.values])}" if month.values else said


@functools.lru_cache(maxsize=4096)
def describe(expression: str, time_zone: str) -> str:
    """``expression`` (already valid) in words, read in ``time_zone``; the expression itself where it
    uses forms this module does not say."""
    fields = cron.expand(expression).split()
    try:
        second = _field(fields[0]) if len(fields) == cron.SECONDS_FIELDS else None
        minute, hour, day, month, weekday = (_field(text) for text in fields[-5:])
        time = _time(second, minute, hour)
        days = _days(day, month, weekday)
    except (Unsaid, ValueError, IndexError):
        return f"cron {expression}, {time_zone}"
    if days == "every day" and not time.startswith("at"):
        return f"{time}, {time_zone}"
    return f"{days}{' ' if time.startswith('at') else ', '}{time}, {time_zone}"
