"""The heartbeat loop: each tenant's StanHeartbeat runs its checks every intervalMinutes.

Heartbeats are one per namespace, so a sleeping coroutine each is cheap here
(unlike tasks, of which there are thousands). On-demand runs go through the
resource: whoever wants fresh results sets the ``stan.dev/run-request``
annotation to a new id; the operator runs the checks at once and writes the
results with ``status.runRequest`` set to that id.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging

from kubernetes_asyncio import client

from stan_core import config, models, validation
from stan_core.kube import Body
from stan_operator import notifications, status, supervision
from stan_operator.checks import CheckContext, runner
from stan_operator.clock import Clock, seconds_until, system_clock
from stan_operator.effects import HeartbeatEffects, Patch
from stan_operator.metrics import HeartbeatState, Metrics
from stan_operator.watched import Keeper, Watched

log = logging.getLogger(__name__)


@dataclasses.dataclass(kw_only=True)
class Heartbeat(Watched[models.StanHeartbeatStatus]):
    spec: models.StanHeartbeatSpec | None
    periodic: bool = False
    """Whether its loop runs it on its interval, which is then written as nextRunAt."""

    @property
    def loop_name(self) -> str:
        return f"heartbeat of {self.namespace}"


class Heartbeats:
    def __init__(
        self,
        api: client.ApiClient,
        configuration: config.OperatorConfig,
        supervisor: supervision.Supervisor,
        effects: HeartbeatEffects,
        leading: asyncio.Event | None = None,
        clock: Clock = system_clock,
        metrics: Metrics | None = None,
    ) -> None:
        self._api = api
        self._metrics = metrics or Metrics()
        self._clock = clock
        self._supervisor = supervisor
        self._config = configuration
        self._events = effects.events
        self._keeper = Keeper(
            effects.status, effects.events, leading, lambda heartbeat: self.forget(heartbeat.namespace)
        )
        self._heartbeats: dict[str, Heartbeat] = {}
        self._notifier: notifications.Notifier[Heartbeat] = notifications.Notifier(
            models.STAN_HEARTBEAT,
            self._keeper,
            effects.events,
            effects.outbox,
            configuration.notificationAllowlist,
            supervisor,
            clock,
            self._metrics,
            targets=lambda heartbeat: heartbeat.spec.notify if heartbeat.spec is not None else [],
            decide=lambda heartbeat, now: (
                None
                if heartbeat.spec is None
                else notifications.decide_for_heartbeat(heartbeat.uid, heartbeat.spec, heartbeat.status, now)
            ),
            current=lambda heartbeat: self._heartbeats.get(heartbeat.namespace) is heartbeat,
        )

    async def sweep_notifications(self) -> None:
        await self._notifier.sweep(self._heartbeats.values())

    def states(self) -> list[HeartbeatState]:
        """Each tenant's heartbeat health and check statuses, for a scrape."""
        return [
            HeartbeatState(
                namespace,
                heartbeat.status.healthy,
                {r.check: models.CheckStatus(r.status).value for r in heartbeat.status.results},
            )
            for namespace, heartbeat in list(self._heartbeats.items())
        ]

    def _interval(self, spec: models.StanHeartbeatSpec) -> datetime.timedelta:
        return datetime.timedelta(seconds=spec.intervalMinutes * self._config.heartbeatMinuteSeconds)

    async def observe(self, body: Body) -> None:
        metadata = body["metadata"]
        if metadata["name"] != models.HEARTBEAT_NAME:
            return
        namespace = metadata["namespace"]
        known = self._heartbeats.get(namespace)
        if known is None or known.uid != metadata["uid"]:
            self.forget(namespace)
            known = Heartbeat(
                namespace=namespace,
                name=metadata["name"],
                uid=metadata["uid"],
                generation=-1,
                spec=None,
                status=models.StanHeartbeatStatus.model_validate(body.get("status") or {}),
            )
            self._heartbeats[namespace] = known
        elif self._keeper.standby:
            # The leader's writes, adopted, so that this replica finds what it left pending when it takes over.
            known.status = models.StanHeartbeatStatus.model_validate(body.get("status") or {})
        if known.generation != metadata.get("generation", 0):
            await self._reconfigure(known, body)
        if known.spec is not None and (request := self._keeper.new_request(known, metadata, known.status.runRequest)):
            self._supervisor.spawn(f"heartbeat run of {namespace} on request", self._run(known, request))

    def forget(self, namespace: str) -> None:
        heartbeat = self._heartbeats.pop(namespace, None)
        if heartbeat is not None:
            self._supervisor.cancel(heartbeat.loop_name)

    async def _reconfigure(self, heartbeat: Heartbeat, body: Body) -> None:
        heartbeat.generation = body["metadata"].get("generation", 0)
        self._supervisor.cancel(heartbeat.loop_name)
        heartbeat.periodic = False
        spec, errors = validation.guarded(validation.heartbeat_spec, body.get("spec") or {}, self._config)
        heartbeat.spec = spec
        if spec is None:
            message = validation.describe(errors)
            await self._keeper.write(
                heartbeat,
                {
                    "nextRunAt": None,
                    "observedGeneration": heartbeat.generation,
                    "conditions": status.ready(
                        heartbeat.status.conditions, False, "InvalidSpec", message, heartbeat.generation
                    ),
                },
            )
            await self._keeper.announce(heartbeat, "InvalidSpec", message, warning=True)
            return
        reason, message = (
            ("Enabled", "The heartbeat runs on its interval.")
            if spec.enabled
            else ("Disabled", "The heartbeat runs only on demand.")
        )
        patch: Patch = {
            "observedGeneration": heartbeat.generation,
            "conditions": status.ready(heartbeat.status.conditions, True, reason, message, heartbeat.generation),
        }
        if not spec.enabled:
            patch["nextRunAt"] = None
        await self._keeper.write(heartbeat, patch)
        if spec.enabled:
            heartbeat.periodic = True
            self._supervisor.keep(heartbeat.loop_name, lambda beat: self._periodic(heartbeat, spec, beat))

    async def _periodic(self, heartbeat: Heartbeat, spec: models.StanHeartbeatSpec, beat: supervision.Beat) -> None:
        """Run at lastRunAt + interval (at once if it never ran), then every interval."""
        last = heartbeat.status.lastRunAt
        due = last + self._interval(spec) if last is not None else self._clock()
        while True:
            await self._keeper.write(heartbeat, {"nextRunAt": models.format_timestamp(due)})
            await asyncio.sleep(seconds_until(self._clock, due))
            await self._keeper.until_leading(beat)
            try:
                await self._run(heartbeat, request=None)
            except Exception as error:  # the loop outlives an outage: the next interval tries again
                log.warning("heartbeat of %s failed: %s: %s", heartbeat.namespace, type(error).__name__, error)
            due = self._clock() + self._interval(spec)

    async def _run(self, heartbeat: Heartbeat, request: str | None) -> None:
        async with heartbeat.lock:
            spec = heartbeat.spec
            if spec is None:
                return
            started = self._clock()
            context = CheckContext(api=self._api, namespace=heartbeat.namespace, configuration=self._config)
            results = await runner.run(spec.checks, context)
            duration = (self._clock() - started).total_seconds()
            self._metrics.heartbeat_duration.labels(heartbeat.namespace).observe(duration)
            issues = runner.issues(results)
            healthy = not issues
            was_healthy = heartbeat.status.healthy
            record = models.HeartbeatRecord(
                startedAt=started,
                durationSeconds=round(duration, 3),
                healthy=healthy,
                checks={result.check: result.status for result in results},
                issues=[f"{issue.check}: {issue.message}" for issue in issues],
                runRequest=request,
            )
            history = [record, *heartbeat.status.recentRuns][: spec.runHistoryLimit]
            patch: Patch = {
                "lastRunAt": models.format_timestamp(started),
                "results": [result.model_dump(mode="json", by_alias=True) for result in results],
                "issues": [result.model_dump(mode="json", by_alias=True) for result in issues],
                "healthy": healthy,
                "recentRuns": [run.model_dump(mode="json", by_alias=True) for run in history],
            }
            if spec.enabled and heartbeat.periodic:
                patch["nextRunAt"] = models.format_timestamp(self._clock() + self._interval(spec))
            if request is not None:
                patch["runRequest"] = request
            await self._keeper.write(heartbeat, patch)
            await self._notifier.reconcile(heartbeat)
        if was_healthy is not None and was_healthy != healthy:
            summary = "; ".join(f"{issue.check}: {issue.message}" for issue in issues)
            await self._events.post(
                heartbeat.ref,
                "Healthy" if healthy else "Unhealthy",
                "All checks are ok." if healthy else summary,
                warning=not healthy,
            )
