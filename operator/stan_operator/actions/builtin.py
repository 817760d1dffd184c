"""Actions that run inside the operator."""

from __future__ import annotations

import datetime

from kubernetes_asyncio.client.exceptions import ApiException

from stan_core import kube, models
from stan_operator import audit
from stan_operator.actions import Outcome, RunContext
from stan_operator.checks import CheckContext, runner


async def audit_workflows(context: RunContext) -> Outcome:
    """Audit the namespace's other tasks; the findings are the run's message."""
    others = {name: status for name, status in context.namespace_tasks().items() if name != context.name}
    found = audit.findings(others, datetime.datetime.now(datetime.UTC))
    return Outcome(models.RunResult.SUCCEEDED, found.summary())


async def run_heartbeat(context: RunContext) -> Outcome:
    """Run the namespace's heartbeat checks (its StanHeartbeat's, else the defaults); the
    run fails when the checks find issues, so an unhealthy tick shows on the task."""
    try:
        heartbeat = await kube.custom_objects(context.api).get_namespaced_custom_object(
            models.GROUP, models.VERSION, context.namespace, models.STAN_HEARTBEAT.plural, models.HEARTBEAT_NAME
        )
        spec = models.StanHeartbeatSpec.model_validate(heartbeat.get("spec") or {})
    except ApiException as error:
        if error.status != 404:
            raise
        spec = context.configuration.heartbeatDefaults
    results = await runner.run(
        spec.checks, CheckContext(api=context.api, namespace=context.namespace, configuration=context.configuration)
    )
    issues = runner.issues(results)
    if not issues:
        return Outcome(models.RunResult.SUCCEEDED, f"healthy: {len(results)} checks ok")
    summary = "; ".join(f"{issue.check} {issue.status}: {issue.message}" for issue in issues)
    return Outcome(models.RunResult.FAILED, f"unhealthy: {summary}")


BUILTIN = {"audit_workflows": audit_workflows, "run_heartbeat": run_heartbeat}
