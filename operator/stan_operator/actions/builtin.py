"""Actions that run inside the operator."""
from __future__ import annotations

import datetime

from stan_operator import audit, models
from stan_operator.actions import Outcome, RunContext


async def audit_workflows(context: RunContext) -> Outcome:
    """Audit the namespace's tasks; the findings are the run's message."""
    tasks = await audit.list_tasks(context.api, context.namespace)
    others = [task for task in tasks if task["metadata"]["uid"] != context.uid]
    found = audit.findings(others, datetime.datetime.now(datetime.timezone.utc))
    return Outcome(models.RunResult.SUCCEEDED, found.summary())


BUILTIN = {"audit_workflows": audit_workflows}
