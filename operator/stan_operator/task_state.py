"""What the operator knows of one StanTask."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
from typing import Any

from stan_core import models
from stan_operator.watched import Watched


@dataclasses.dataclass(kw_only=True)
class Task(Watched[models.StanTaskStatus]):
    """A StanTask: its spec (None while invalid), and the status it last wrote or saw."""

    created: datetime.datetime
    spec: models.StanTaskSpec | None
    next_tick: datetime.datetime | None = None
    """The tick its entry in the heap stands for; None while none does (paused, invalid, finished, or being
    fired)."""
    next_due: datetime.datetime | None = None
    """When ``next_tick`` fires, its jitter included: the instant of its entry in the heap."""
    active: dict[str, asyncio.Task[Any]] = dataclasses.field(default_factory=dict)
    """Its runs going on in this replica, by run id."""
    waiting: str | None = None
    """The run that waits for the one going on to end (concurrencyPolicy: BufferOne); at most one does."""
    backfilling: str | None = None
    """The backfill request going on in this replica."""

    @property
    def busy(self) -> bool:
        """Whether a run of the task is still going (a finished one may wait in ``active`` for its claim)."""
        return any(not run.done() for run in self.active.values())
