"""Which ticks of a task ran: spans of consecutive ticks of one schedule, kept in its status.

A backfill reads it so that it runs no tick twice, whichever schedule the tick
was run under. A task that runs on schedule extends one span per run; a gap
(a pause, an outage, a skipped tick) starts another. At most
``models.MAX_TICK_SPANS`` spans are kept: dropping the oldest moves
``ranTicksSince``, before which nothing is known and nothing is backfilled.
"""

from __future__ import annotations

import bisect
import datetime

from stan_core import cron, models


def _is_tick(span: models.TickSpan, moment: datetime.datetime, allow_seconds: bool) -> bool:
    return cron.previous_tick(span.schedule, span.timeZone, moment, allow_seconds=allow_seconds) == moment


def ran(status: models.StanTaskStatus, tick: datetime.datetime, allow_seconds: bool) -> bool:
    """Whether ``tick`` ran: it lies in a span and is a tick of that span's schedule."""
    return any(
        span.first <= tick <= span.last and (span.first == tick or _is_tick(span, tick, allow_seconds))
        for span in status.ranTicks
    )


def _joins(earlier: models.TickSpan, later: models.TickSpan, allow_seconds: bool) -> bool:
    """Whether two spans, ``earlier`` starting first, are one: the same schedule, with no tick between them."""
    if (earlier.schedule, earlier.timeZone) != (later.schedule, later.timeZone):
        return False
    if later.first <= earlier.last:
        return True
    return cron.next_tick(earlier.schedule, earlier.timeZone, earlier.last, allow_seconds=allow_seconds) >= later.first


def recorded(
    status: models.StanTaskStatus, spec: models.StanTaskSpec, tick: datetime.datetime, allow_seconds: bool
) -> dict[str, object]:
    """The status fields that record ``tick`` of ``spec``'s schedule as run: the span it extends or starts,
    joined with its neighbours, the oldest dropped beyond the bound."""
    spans = list(status.ranTicks)
    added = models.TickSpan(schedule=spec.schedule, timeZone=spec.timeZone, first=tick, last=tick)
    at = bisect.bisect([span.first for span in spans], tick)
    if at < len(spans) and _joins(added, spans[at], allow_seconds):
        added = added.model_copy(update={"last": max(spans.pop(at).last, tick)})
    if at > 0 and _joins(spans[at - 1], added, allow_seconds):
        before = spans.pop(at - 1)
        added = added.model_copy(update={"first": before.first, "last": max(before.last, added.last)})
        at -= 1
    spans.insert(at, added)
    since = status.ranTicksSince
    while len(spans) > models.MAX_TICK_SPANS:
        since = spans.pop(0).last
    fields: dict[str, object] = {"ranTicks": [span.model_dump(mode="json") for span in spans]}
    if since != status.ranTicksSince and since is not None:
        fields["ranTicksSince"] = models.format_timestamp(since)
    return fields
