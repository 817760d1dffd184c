"""Lateness accounting shared by every kind of run the tick benchmark compares.

A Stan run, the Event that says its claim is stored, and a CronJob's Job are each one
*occurrence*: an owner (a task or a CronJob), the tick it answers, and how
late it came. Counting them the same way is what makes the figures
comparable: lateness only for the measured ticks, a measured tick without an
occurrence is missed, a second occurrence of the same tick is a duplicate.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import math
from collections.abc import Iterable, Sequence


@dataclasses.dataclass(frozen=True)
class Occurrence:
    owner: str
    tick: datetime.datetime
    late: float
    """Seconds after the tick."""


@dataclasses.dataclass(frozen=True)
class Summary:
    count: int
    p50: float | None
    p99: float | None
    max: float | None
    mean: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            return cls(0, None, None, None, None)
        ordered = sorted(values)
        return cls(
            len(ordered), percentile(ordered, 0.50), percentile(ordered, 0.99), ordered[-1], sum(ordered) / len(ordered)
        )


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values: a value that was measured, never interpolated."""
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@dataclasses.dataclass(frozen=True)
class Accounting:
    lateness: list[float]
    missed: int
    duplicates: int
    per_tick: dict[str, Summary]

    @property
    def summary(self) -> Summary:
        return Summary.of(self.lateness)


def account(owners: Iterable[str], occurrences: Iterable[Occurrence], ticks: Sequence[datetime.datetime]) -> Accounting:
    """Lateness of the occurrences of the measured ``ticks``; missed and duplicate (owner, tick) pairs."""
    measured = set(ticks)
    seen: collections.Counter[tuple[str, datetime.datetime]] = collections.Counter()
    by_tick: dict[datetime.datetime, list[float]] = {tick: [] for tick in ticks}
    for occurrence in occurrences:
        if occurrence.tick not in measured:
            continue
        seen[occurrence.owner, occurrence.tick] += 1
        by_tick[occurrence.tick].append(occurrence.late)
    missed = sum(1 for owner in owners for tick in ticks if (owner, tick) not in seen)
    return Accounting(
        lateness=[late for values in by_tick.values() for late in values],
        missed=missed,
        duplicates=sum(count - 1 for count in seen.values()),
        per_tick={tick.isoformat(): Summary.of(values) for tick, values in by_tick.items()},
    )
