"""The tenant's heartbeat as the REST contract sees it, translated to its StanHeartbeat.

A tenant without a StanHeartbeat yet reads the configured defaults; the first
PUT or run creates the object. A run is asked for through the resource (an
annotation carrying a request id) and answered by the operator in status; a
run asked for while one is in flight joins it instead of starting another.
"""

from __future__ import annotations

import datetime
import uuid

from stan_api import schemas, views
from stan_api.facade import Facade, Invalid, TimedOut, retrying_conflicts, talking_to_cluster
from stan_core import catalog, kube, models, validation


def _spec(facade: Facade, body: dict | None) -> models.StanHeartbeatSpec:
    if body is None:
        return facade.configuration.heartbeatDefaults
    return models.StanHeartbeatSpec.model_validate(body.get("spec") or {})


def _answer(spec: models.StanHeartbeatSpec) -> schemas.Heartbeat:
    return schemas.Heartbeat(
        enabled=spec.enabled,
        checks=spec.checks,
        intervalMinutes=spec.intervalMinutes,
        availableChecks=catalog.check_names(),
        **views.notification_fields(
            spec.model_dump(mode="json", exclude_none=True), views.HEARTBEAT_NOTIFICATION_FIELDS
        ),
    )


def get_heartbeat(facade: Facade, namespace: str) -> schemas.Heartbeat:
    facade.require_cluster()
    return _answer(_spec(facade, facade.heartbeats.get(namespace, models.HEARTBEAT_NAME)))


def recent_runs(facade: Facade, namespace: str) -> list[schemas.HeartbeatRecord]:
    """The tenant's latest heartbeat runs, newest first; none before its first run."""
    facade.require_cluster()
    body = facade.heartbeats.get(namespace, models.HEARTBEAT_NAME)
    status = models.StanHeartbeatStatus.model_validate((body or {}).get("status") or {})
    return [
        schemas.HeartbeatRecord(
            startedAt=run.startedAt,
            durationSeconds=run.durationSeconds,
            healthy=run.healthy,
            checks={check: models.CheckStatus(state).value for check, state in run.checks.items()},
            issues=run.issues,
            onDemand=run.runRequest is not None,
        )
        for run in status.recentRuns
    ]


def _pending_request(body: dict | None) -> str | None:
    """The run request the operator has not answered yet, if any."""
    if body is None:
        return None
    asked = (body["metadata"].get("annotations") or {}).get(models.RUN_REQUEST_ANNOTATION)
    answered = (body.get("status") or {}).get("runRequest")
    return asked if asked and asked != answered else None


async def _write(facade: Facade, namespace: str, spec_changes: dict, annotations: dict[str, str]) -> dict:
    """Create the tenant's StanHeartbeat (from the defaults) or patch it, under a resourceVersion precondition.

    A run request (in ``annotations``) is not written while another is pending: the object is
    returned as it is, and its pending request is the one to wait for."""
    objects = kube.Objects(facade.api, models.STAN_HEARTBEAT)

    async def attempt() -> dict:
        current = await kube.unless_missing(objects.get(namespace, models.HEARTBEAT_NAME))
        if current is not None and models.RUN_REQUEST_ANNOTATION in annotations and _pending_request(current):
            return current
        merged = {**_spec(facade, current).model_dump(mode="json"), **spec_changes}
        _, errors = validation.guarded(validation.heartbeat_spec, merged, facade.configuration)
        if errors:
            raise Invalid(errors)
        if current is None:
            return await objects.create(
                namespace,
                {
                    "apiVersion": models.API_VERSION,
                    "kind": models.STAN_HEARTBEAT.kind,
                    "metadata": {"name": models.HEARTBEAT_NAME, "annotations": annotations},
                    "spec": merged,
                },
            )
        return await objects.patch(
            namespace,
            models.HEARTBEAT_NAME,
            {
                "metadata": {"resourceVersion": current["metadata"]["resourceVersion"], "annotations": annotations},
                "spec": spec_changes,
            },
        )

    with talking_to_cluster():
        stored = await retrying_conflicts("heartbeat", attempt)
    await facade.heartbeats.remember(stored)
    return stored


async def update_heartbeat(facade: Facade, namespace: str, request: schemas.HeartbeatUpdate) -> schemas.Heartbeat:
    facade.require_cluster()
    stored = await _write(facade, namespace, request.model_dump(mode="json", exclude_none=True), {})
    return _answer(_spec(facade, stored))


async def run_heartbeat(facade: Facade, namespace: str) -> schemas.HeartbeatRun:
    """Ask the operator for a run and wait for its results (fresh: started after the request)."""
    facade.require_cluster()
    asked_at = datetime.datetime.now(datetime.UTC)
    stored = await _write(facade, namespace, {}, {models.RUN_REQUEST_ANNOTATION: uuid.uuid4().hex})
    request = stored["metadata"]["annotations"][models.RUN_REQUEST_ANNOTATION]

    def answered(body: dict | None) -> bool:
        status = models.StanHeartbeatStatus.model_validate((body or {}).get("status") or {})
        return status.runRequest == request or (
            status.lastRunAt is not None and status.lastRunAt >= asked_at and bool(status.results)
        )

    try:
        body = await facade.heartbeats.wait_for(
            namespace, models.HEARTBEAT_NAME, answered, facade.operator_answer_seconds
        )
    except TimeoutError:
        raise TimedOut(
            f"the operator did not run the heartbeat within {facade.operator_answer_seconds:g}s; is it running?"
        ) from None
    status = models.StanHeartbeatStatus.model_validate((body or {}).get("status") or {})
    results = [schemas.CheckResult.model_validate(result.model_dump()) for result in status.results]
    return schemas.HeartbeatRun(
        results=results,
        issues=[r for r in results if r.status != "ok"],
        healthy=not any(r.status != "ok" for r in results),
    )
