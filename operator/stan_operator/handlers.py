"""kopf's handlers: thin glue from watch events and admission reviews to Stan's logic.

Only event handlers, indexes-free and without persisted handler state, are
used: kopf writes no annotations and adds no finalizers to Stan's objects.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import socket

import kopf

from stan_core import config, kube, models, validation
from stan_operator import (
    heartbeats,
    kube_effects,
    leadership,
    metrics,
    notifications,
    scheduler,
    supervision,
    webhooks,
)
from stan_operator.actions import jobs, registry

WATCH_SERVER_TIMEOUT = 300  # seconds; the API server wants an integer
WATCH_CLIENT_TIMEOUT = 330.0
LEASE_NAME = "stan-operator"
LOOP_STALE_SECONDS = 120.0
"""The scheduler and leader election go round at least every 30 s; four times that without progress is stuck."""
GC_THRESHOLDS = (50_000, 20, 10)
"""Fewer, larger young-generation collections than Python's default (700, 10, 10): launching the
runs of thousands of tasks that share a tick allocates objects by the hundred thousand, and each
collection they trigger delays every start that follows it."""


@dataclasses.dataclass(frozen=True)
class Options:
    """How this operator process runs, from the command line."""

    webhook: webhooks.WebhookOptions | None
    leader_election: bool
    metrics_address: tuple[str, int] | None
    """Where to serve Prometheus metrics (host, port); None for nowhere."""


class NoDiffBase(kopf.DiffBaseStorage):
    """Stan registers no change handlers, so nothing needs a diff base; kopf's default would
    still deep-copy every object on every watch event (thousands a minute at a shared tick)."""

    def build(self, *, body: kopf.Body, extra_fields: object = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass


class NoProgress(kopf.ProgressStorage):
    """Event handlers keep no progress; kopf's default would still look for its annotations and status
    stanza on every watch event, thousands a minute at a shared tick."""

    def fetch(self, *, key: kopf.HandlerId, body: kopf.Body) -> kopf.ProgressRecord | None:
        return None

    def store(self, *, key: kopf.HandlerId, record: kopf.ProgressRecord, body: kopf.Body, patch: kopf.Patch) -> None:
        pass

    def purge(self, *, key: kopf.HandlerId, body: kopf.Body, patch: kopf.Patch) -> None:
        pass

    def touch(self, *, body: kopf.Body, patch: kopf.Patch, value: str | None) -> None:
        pass

    def clear(self, *, essence: kopf.BodyEssence) -> kopf.BodyEssence:
        return essence


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: object) -> None:
    # Without timeouts a watch can hang silently on a dropped connection and stop delivering events.
    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT
    settings.watching.client_timeout = WATCH_CLIENT_TIMEOUT
    settings.watching.connect_timeout = 30.0
    settings.posting.level = logging.WARNING
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.persistence.progress_storage = NoProgress()
    gc.set_threshold(*GC_THRESHOLDS)
    options: Options = memo.options
    if options.webhook is not None:
        settings.admission.server = webhooks.server(options.webhook)
        if options.webhook.manage_configuration:
            settings.admission.managed = webhooks.CONFIGURATION_NAME
    memo.config = config.load()
    memo.api = await kube.api_client()
    memo.tracker = jobs.JobTracker()
    memo.supervisor = supervision.Supervisor()
    memo.leader = None
    leading = None
    if options.leader_election:
        memo.leader = leadership.Leadership(
            memo.api, config.own_namespace(), LEASE_NAME, f"{socket.gethostname()}-{os.getpid()}"
        )
        leading = memo.leader.leading
        memo.supervisor.keep("leader election", memo.leader.run, stale_after=LOOP_STALE_SECONDS)
    memo.metrics = metrics.Metrics(task_label=memo.config.metricsTaskLabel)
    memo.outbox = kube_effects.Outbox(memo.api)
    memo.scheduler = scheduler.Scheduler(
        memo.api,
        memo.config,
        registry.build(memo.config, memo.tracker),
        memo.supervisor,
        kube_effects.for_tasks(memo.api, memo.outbox),
        leading,
        metrics=memo.metrics,
    )
    memo.heartbeats = heartbeats.Heartbeats(
        memo.api,
        memo.config,
        memo.supervisor,
        kube_effects.for_heartbeats(memo.api, memo.outbox),
        leading,
        metrics=memo.metrics,
    )
    memo.metrics.follow(memo.scheduler.state, memo.heartbeats.states, lambda: leading is None or leading.is_set())
    memo.metrics_server = None
    if options.metrics_address is not None:
        memo.metrics_server = await memo.metrics.serve(*options.metrics_address)
    memo.supervisor.keep("scheduler", memo.scheduler.run, stale_after=LOOP_STALE_SECONDS)
    sweeps = [memo.scheduler.sweep_notifications, memo.heartbeats.sweep_notifications]
    memo.supervisor.keep("notifications", lambda beat: notifications.keep_sweeping(sweeps, beat))


@kopf.on.probe(id="loops")
async def loops(memo: kopf.Memo, **_: object) -> dict[str, str]:
    """The liveness endpoint fails (500) while a background loop keeps failing or is stuck."""
    try:
        return memo.supervisor.health()
    except supervision.Unhealthy as trouble:
        raise kopf.PermanentError(str(trouble)) from None


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: object) -> None:
    memo.supervisor.stop()
    if memo.leader is not None:
        await memo.leader.release()
    if memo.metrics_server is not None:
        await memo.metrics_server.cleanup()
    await memo.outbox.close()
    await memo.api.close()


@kopf.on.event(models.GROUP, models.VERSION, models.STAN_TASK.plural)
async def task_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: object) -> None:
    if event["type"] == "DELETED":
        memo.scheduler.forget(body["metadata"]["namespace"], body["metadata"]["name"])
    else:
        await memo.scheduler.observe(dict(body))


@kopf.on.event(models.GROUP, models.VERSION, models.STAN_HEARTBEAT.plural)
async def heartbeat_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: object) -> None:
    if event["type"] == "DELETED":
        memo.heartbeats.forget(body["metadata"]["namespace"])
    else:
        await memo.heartbeats.observe(dict(body))


async def job_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: object) -> None:
    memo.tracker.observe(dict(body), deleted=event["type"] == "DELETED")


async def validate_task(spec: kopf.Spec, memo: kopf.Memo, **_: object) -> None:
    errors = validation.guarded(validation.task_spec, dict(spec), memo.config)[1]
    if errors:
        raise kopf.AdmissionError(f"invalid StanTask: {validation.describe(errors)}", code=422)


async def validate_heartbeat(spec: kopf.Spec, memo: kopf.Memo, **_: object) -> None:
    errors = validation.guarded(validation.heartbeat_spec, dict(spec), memo.config)[1]
    if errors:
        raise kopf.AdmissionError(f"invalid StanHeartbeat: {validation.describe(errors)}", code=422)


def follow_jobs() -> None:
    """Watch Stan's Jobs; only when Job actions are configured, since only then is the operator
    granted Jobs (creating workloads in a namespace is enough to read its Secrets)."""
    kopf.on.event("batch", "v1", "jobs", labels={jobs.TASK_UID_LABEL: kopf.PRESENT})(job_event)


def serve_admission() -> None:
    """Register the admission handlers; kopf then insists on a webhook server, so only when one is wanted."""
    for resource, handler in ((models.STAN_TASK, validate_task), (models.STAN_HEARTBEAT, validate_heartbeat)):
        kopf.on.validate(
            models.GROUP,
            models.VERSION,
            resource.plural,
            id=resource.singular,
            operations=["CREATE", "UPDATE"],
            ignore_failures=True,
        )(handler)
