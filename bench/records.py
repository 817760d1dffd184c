"""When each run's record reached the cluster, seen by a watch of every StanTask.

A run is recorded by the write that claims its tick (``status.recentRuns``
gains a run with that ``scheduledAt``). The first watch event that shows it is
when the record was stored, within the watch's delivery delay on loopback: no
Event needed, so the figure holds whatever ``runEvents`` the operator posts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
from collections.abc import Callable, Iterable

from kubernetes_asyncio import client, watch

from bench.lateness import Accounting, Occurrence, account
from stan_core import models


class RecordWatch:
    """Watches StanTasks cluster-wide from when it is started, noting when each (task, tick) first shows."""

    def __init__(self, api: client.ApiClient) -> None:
        self._api = api
        self._seen: dict[tuple[str, str], float] = {}
        self.runs: dict[tuple[str, str], dict] = {}
        """The latest of every run seen, by ``(namespace/name, runId)``: the runs that a short run history
        prunes before the end of a benchmark are kept here."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _now(self, objects: client.CustomObjectsApi) -> str:
        """The resourceVersion to watch from: now, since earlier runs are not measured."""
        listed = await objects.list_cluster_custom_object(
            models.GROUP, models.VERSION, models.STAN_TASK.plural, limit=1
        )
        return str(listed["metadata"]["resourceVersion"])

    async def _follow(self) -> None:
        objects = client.CustomObjectsApi(self._api)
        version = await self._now(objects)
        while True:
            stream = watch.Watch()
            try:
                async for event in stream.stream(
                    objects.list_cluster_custom_object,
                    models.GROUP,
                    models.VERSION,
                    models.STAN_TASK.plural,
                    resource_version=version,
                    timeout_seconds=300,
                    allow_watch_bookmarks=True,
                ):
                    body = event["object"]
                    version = body["metadata"]["resourceVersion"]
                    self._note(body, time.time())
            except client.exceptions.ApiException as error:
                if error.status != 410:
                    raise
                version = await self._now(objects)
            finally:
                stream.stop()

    def _note(self, body: dict, now: float) -> None:
        metadata = body["metadata"]
        owner = f"{metadata.get('namespace')}/{metadata.get('name')}"
        for run in (body.get("status") or {}).get("recentRuns") or []:
            self._seen.setdefault((owner, run["scheduledAt"]), now)
            self.runs[owner, run["runId"]] = run

    def accounting(
        self,
        owners: Iterable[str],
        ticks: list[datetime.datetime],
        delay: Callable[[str, datetime.datetime], float] = lambda owner, tick: 0.0,
    ) -> Accounting:
        """Lateness of each measured tick's record (by ``namespace/name``), counted from the tick plus the
        ``delay`` of its owner (its jitter, say); a record never seen is missed."""
        measured = set(ticks)
        occurrences = [
            Occurrence(owner, tick, seen - tick.timestamp() - delay(owner, tick))
            for (owner, scheduled), seen in self._seen.items()
            if (tick := datetime.datetime.fromisoformat(scheduled)) in measured
        ]
        return account(owners, occurrences, ticks)
