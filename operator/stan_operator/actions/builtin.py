"""Actions that run inside the operator."""

from __future__ import annotations

import datetime

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
    heartbeat = await kube.unless_missing(
        kube.Objects(context.api, models.STAN_HEARTBEAT).get(context.namespace, models.HEARTBEAT_NAME)
    )
    spec = (
        context.configuration.heartbeatDefaults
        if heartbeat is None
        else models.StanHeartbeatSpec.model_validate(heartbeat.get("spec") or {})
    )
    results = await runner.run(
        spec.checks, CheckContext(api=context.api, namespace=context.namespace, configuration=context.configuration)
    )
    issues = runner.issues(results)
    if not issues:
        return Outcome(models.RunResult.SUCCEEDED, f"healthy: {len(results)} checks ok")
    summary = "; ".join(f"{issue.check} {issue.status}: {issue.message}" for issue in issues)
    return Outcome(models.RunResult.FAILED, f"unhealthy: {summary}")


BUILTIN = {"audit_workflows": audit_workflows, "run_heartbeat": run_heartbeat}
