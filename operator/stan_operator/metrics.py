"""The operator's Prometheus metrics, served on a port of their own.

Events (a run started, recorded, a tick missed, a claim lost, a heartbeat run, a
notification) are counted as they happen. State (tasks known and scheduled, the
heap's depth, failure streaks, leadership, heartbeat health) is read from the
scheduler and the heartbeats when Prometheus scrapes, so no gauge can drift from
what the operator holds. Labels stay bounded: namespace, result, check, status,
channel; a per-task label is an option (``metricsTaskLabel``), off by default.

The endpoint runs on the operator's event loop, beside the state it reads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    Metric,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from stan_core import models

START_DELAY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
"""From a millisecond (an in-process run at its tick) to ten minutes (an operator that was away)."""
HEARTBEAT_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


@dataclasses.dataclass(frozen=True)
class TaskState:
    """What the scheduler holds, as a scrape reads it."""

    known: int
    scheduled: int
    heap_depth: int
    failure_streaks: dict[str, int]
    """The longest current streak of failed runs among each namespace's tasks."""


@dataclasses.dataclass(frozen=True)
class HeartbeatState:
    namespace: str
    healthy: bool | None
    checks: dict[str, str]
    """Each check's latest status (ok, warn, error)."""


CHECK_STATUSES = tuple(status.value for status in models.CheckStatus)
RUN_RESULTS = tuple(result.value for result in models.RunResult if result != models.RunResult.RUNNING)
NOTIFICATION_CHANNELS = ("webhook", "slack")
NOTIFICATION_OUTCOMES = tuple(outcome.value for outcome in models.NotificationOutcome)


class Metrics:
    def __init__(self, *, task_label: bool = False) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self._task_label = task_label
        task_labels = ["namespace", "task"] if task_label else ["namespace"]
        self.start_delay = Histogram(
            "stan_task_start_delay_seconds",
            "How late each run started after its tick",
            task_labels,
            buckets=START_DELAY_BUCKETS,
            registry=self.registry,
        )
        self.runs = Counter(
            "stan_task_runs", "Runs recorded, by result", [*task_labels, "result"], registry=self.registry
        )
        self.ticks_missed = Counter(
            "stan_task_ticks_missed",
            "Ticks skipped because they came past startingDeadlineSeconds",
            task_labels,
            registry=self.registry,
        )
        self.claims_lost = Counter(
            "stan_task_claims_lost",
            "Ticks another claim took first (another replica, or a stale view)",
            registry=self.registry,
        )
        self.heartbeat_duration = Histogram(
            "stan_heartbeat_run_duration_seconds",
            "How long a heartbeat's checks took",
            ["namespace"],
            buckets=HEARTBEAT_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.notifications = Counter(
            "stan_notifications",
            "Notifications sent, by channel and outcome",
            ["channel", "outcome"],
            registry=self.registry,
        )
        for channel in NOTIFICATION_CHANNELS:
            for outcome in NOTIFICATION_OUTCOMES:
                self.notifications.labels(channel, outcome)
        self._state = _StateCollector()
        self.registry.register(self._state)

    def _task(self, namespace: str, task: str) -> tuple[str, ...]:
        return (namespace, task) if self._task_label else (namespace,)

    def task_seen(self, namespace: str, task: str) -> None:
        """Export a task's series at zero before their first event: ``rate()`` and ``increase()`` see a
        series' first increment only once the series exists."""
        labels = self._task(namespace, task)
        self.start_delay.labels(*labels)
        self.ticks_missed.labels(*labels)
        for result in RUN_RESULTS:
            self.runs.labels(*labels, result)

    def run_started(self, namespace: str, task: str, delay_seconds: float) -> None:
        self.start_delay.labels(*self._task(namespace, task)).observe(max(0.0, delay_seconds))

    def run_recorded(self, namespace: str, task: str, result: models.RunResult | str) -> None:
        self.runs.labels(*self._task(namespace, task), models.RunResult(result).value).inc()

    def notified(self, channel: str, outcome: models.NotificationOutcome | str) -> None:
        self.notifications.labels(channel, models.NotificationOutcome(outcome).value).inc()

    def tick_missed(self, namespace: str, task: str) -> None:
        self.ticks_missed.labels(*self._task(namespace, task)).inc()

    def follow(
        self,
        tasks: Callable[[], TaskState],
        heartbeats: Callable[[], Iterable[HeartbeatState]],
        leading: Callable[[], bool],
    ) -> None:
        """Where a scrape reads the operator's state."""
        self._state.sources = (tasks, heartbeats, leading)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    async def serve(self, host: str, port: int) -> web.AppRunner:
        """Serve ``/metrics`` until the returned runner is cleaned up."""

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(body=self.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        return runner


class _StateCollector(Collector):
    def __init__(self) -> None:
        self.sources: (
            tuple[Callable[[], TaskState], Callable[[], Iterable[HeartbeatState]], Callable[[], bool]] | None
        ) = None

    def collect(self) -> Iterator[Metric]:
        if self.sources is None:
            return
        tasks, heartbeats, leading = self.sources
        state = tasks()
        yield GaugeMetricFamily("stan_tasks_known", "StanTasks the operator watches", value=state.known)
        yield GaugeMetricFamily("stan_tasks_scheduled", "StanTasks with a next tick", value=state.scheduled)
        yield GaugeMetricFamily("stan_tick_heap_depth", "Entries in the heap of next ticks", value=state.heap_depth)
        streaks = GaugeMetricFamily(
            "stan_task_consecutive_failures_max",
            "The longest current streak of failed runs among the namespace's tasks",
            labels=["namespace"],
        )
        for namespace, streak in sorted(state.failure_streaks.items()):
            streaks.add_metric([namespace], streak)
        yield streaks
        yield GaugeMetricFamily("stan_leader", "1 while this replica leads", value=1 if leading() else 0)
        healthy = GaugeMetricFamily(
            "stan_heartbeat_healthy", "1 while the tenant's heartbeat is healthy, 0 while not", labels=["namespace"]
        )
        checks = GaugeMetricFamily(
            "stan_heartbeat_check_status",
            "1 for each heartbeat check's latest status",
            labels=["namespace", "check", "status"],
        )
        for heartbeat in heartbeats():
            if heartbeat.healthy is not None:
                healthy.add_metric([heartbeat.namespace], 1 if heartbeat.healthy else 0)
            for check, status in sorted(heartbeat.checks.items()):
                for candidate in CHECK_STATUSES:
                    checks.add_metric([heartbeat.namespace, check, candidate], 1 if status == candidate else 0)
        yield healthy
        yield checks
