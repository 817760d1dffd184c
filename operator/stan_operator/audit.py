"""What is wrong with a namespace's tasks: failed last runs and overdue ticks.

Shared by the ``audit_workflows`` action and the ``workflows`` heartbeat check,
so that both judge a task the same way.
"""
from __future__ import annotations

import dataclasses
import datetime

from kubernetes_asyncio import client

from stan_operator import ids, models

OVERDUE_GRACE = datetime.timedelta(minutes=2)


@dataclasses.dataclass(frozen=True)
class Findings:
    audited: int
    failed: tuple[str, ...]
    overdue: tuple[str, ...]

    def summary(self) -> str:
        if not self.failed and not self.overdue:
            return f"All workflows healthy ({self.audited} tasks audited)"
        parts = []
        if self.failed:
            parts.append(f"{len(self.failed)} failed: {', '.join(self.failed)}")
        if self.overdue:
            parts.append(f"{len(self.overdue)} overdue: {', '.join(self.overdue)}")
        return f"{self.audited} tasks audited; " + "; ".join(parts)


def findings(tasks: list[dict], now: datetime.datetime, grace: datetime.timedelta = OVERDUE_GRACE) -> Findings:
    failed, overdue = [], []
    for body in tasks:
        status = models.StanTaskStatus.model_validate(body.get("status") or {})
        label = ids.task_id(body["metadata"]["name"])
        if status.lastRun is not None and status.lastRun.result == models.RunResult.FAILED:
            failed.append(label)
        elif status.status == "active" and status.nextRunAt is not None and now - status.nextRunAt > grace:
            overdue.append(label)
    return Findings(audited=len(tasks), failed=tuple(failed), overdue=tuple(overdue))


async def list_tasks(api: client.ApiClient, namespace: str) -> list[dict]:
    listing = await client.CustomObjectsApi(api).list_namespaced_custom_object(
        models.GROUP, models.VERSION, namespace, models.STAN_TASK.plural)
    return listing["items"]
