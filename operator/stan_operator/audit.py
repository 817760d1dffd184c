"""What is wrong with a namespace's tasks: failed last runs and overdue ticks.

Shared by the ``audit_workflows`` action and the ``workflows`` heartbeat check,
so that both judge a task the same way.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping

from kubernetes_asyncio import client

from stan_core import ids, kube, models

OVERDUE_GRACE = datetime.timedelta(minutes=2)
NAMES_SHOWN = 5


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
            parts.append(f"{len(self.failed)} failed: {_some(self.failed)}")
        if self.overdue:
            parts.append(f"{len(self.overdue)} overdue: {_some(self.overdue)}")
        return f"{self.audited} tasks audited; " + "; ".join(parts)


def _some(names: tuple[str, ...]) -> str:
    """The first few names: a message that lists a whole namespace grows every task's status with it, and
    every status write, when the namespace falls behind, is when writes must be cheapest."""
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown if len(names) <= NAMES_SHOWN else f"{shown} and {len(names) - NAMES_SHOWN} more"


def findings(
    statuses: Mapping[str, models.StanTaskStatus], now: datetime.datetime, grace: datetime.timedelta = OVERDUE_GRACE
) -> Findings:
    """Judge tasks by name and status; callers bring statuses from wherever they already have them."""
    failed, overdue = [], []
    # Hoisted out of the loop: an audit runs over every task of a namespace, every tick of every auditing task.
    failure, due_before = models.RunResult.FAILED.value, now - grace
    for name, status in statuses.items():
        last = status.latestRun
        if last is not None and last.result == failure:
            failed.append(ids.task_id(name))
        elif status.nextRunAt is not None and status.nextRunAt < due_before and status.status == "active":
            overdue.append(ids.task_id(name))
    return Findings(audited=len(statuses), failed=tuple(failed), overdue=tuple(overdue))


def statuses(items: Iterable[dict]) -> dict[str, models.StanTaskStatus]:
    return {body["metadata"]["name"]: models.StanTaskStatus.model_validate(body.get("status") or {}) for body in items}


async def list_tasks(api: client.ApiClient, namespace: str) -> list[dict]:
    listing = await kube.Objects(api, models.STAN_TASK).list_objects(namespace)
    return list(listing["items"])
