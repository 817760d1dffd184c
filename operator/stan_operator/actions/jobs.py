"""Job-backed actions: each tick becomes a batch/v1 Job owned by its task.

The Job's name is derived from the task and the tick, so a tick can create at
most one Job even across operator restarts: a second create meets
AlreadyExists and waits for the existing Job instead. The run's result follows
the Job's terminal condition, which a watch on Stan's Jobs delivers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from stan_core import config, kube, models
from stan_operator.actions import Outcome, RunContext

TASK_UID_LABEL = "stan.dev/task-uid"
TASK_LABEL = "stan.dev/task"
SCHEDULED_ANNOTATION = "stan.dev/scheduled-at"
MAX_NAME = 63


def job_name(task_name: str, scheduled_at: float) -> str:
    """A tick's Job: the task and the tick's epoch second; an on-demand run, not on a whole
    second, takes epoch milliseconds, so it never meets a tick's Job."""
    suffix = f"-{scheduled_at:.0f}" if scheduled_at == int(scheduled_at) else f"-{round(scheduled_at * 1000)}"
    if len(task_name) + len(suffix) <= MAX_NAME:
        return task_name + suffix
    digest = hashlib.sha256(task_name.encode()).hexdigest()[:8]
    return f"{task_name[: MAX_NAME - len(suffix) - 9].rstrip('-.')}-{digest}{suffix}"


def terminal_outcome(job: dict) -> Outcome | None:
    """The run's outcome once the Job has finished, else None."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return Outcome(models.RunResult.SUCCEEDED, f"Job {job['metadata']['name']} completed")
        if condition.get("type") == "Failed":
            detail = condition.get("message") or condition.get("reason") or "failed"
            return Outcome(models.RunResult.FAILED, f"Job {job['metadata']['name']} failed: {detail}")
    return None


class JobTracker:
    """Futures for Jobs that runs wait on, resolved from the watch on Stan's Jobs."""

    def __init__(self) -> None:
        self._waiters: dict[tuple[str, str], asyncio.Future[Outcome]] = {}
        self._finished: dict[tuple[str, str], Outcome] = {}

    def observe(self, job: dict, deleted: bool = False) -> None:
        key = (job["metadata"]["namespace"], job["metadata"]["name"])
        outcome = terminal_outcome(job)
        if deleted:
            self._finished.pop(key, None)
            outcome = outcome or Outcome(models.RunResult.FAILED, f"Job {key[1]} was deleted before it finished")
        elif outcome is not None:
            self._finished[key] = outcome
        waiter = self._waiters.get(key)
        if outcome is not None and waiter is not None and not waiter.done():
            waiter.set_result(outcome)

    async def wait(self, namespace: str, name: str) -> Outcome:
        key = (namespace, name)
        if key in self._finished:
            return self._finished[key]
        waiter = self._waiters.setdefault(key, asyncio.get_running_loop().create_future())
        try:
            return await waiter
        finally:
            self._waiters.pop(key, None)


@dataclasses.dataclass(frozen=True)
class JobAction:
    action: str
    container: config.JobAction
    tracker: JobTracker

    def manifest(self, context: RunContext, name: str) -> dict:
        env = [
            {"name": "STAN_TASK_ID", "value": context.task_id},
            {"name": "STAN_ACTION", "value": self.action},
            {"name": "STAN_MODEL_ID", "value": context.spec.modelId},
            {"name": "STAN_SCHEDULED_AT", "value": models.format_timestamp(context.scheduled_at)},
            {"name": "STAN_RUN_ID", "value": context.run_id},
            *self.container.env,
        ]
        container: dict = {"name": "action", "image": self.container.image, "env": env}
        if self.container.command:
            container["command"] = self.container.command
        if self.container.args:
            container["args"] = self.container.args
        if self.container.resources:
            container["resources"] = self.container.resources
        if self.container.securityContext:
            container["securityContext"] = self.container.securityContext
        spec: dict = {
            "backoffLimit": self.container.backoffLimit,
            "template": {
                "metadata": {"labels": {TASK_LABEL: context.name}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [container],
                    "automountServiceAccountToken": self.container.automountServiceAccountToken,
                },
            },
        }
        if self.container.activeDeadlineSeconds:
            spec["activeDeadlineSeconds"] = self.container.activeDeadlineSeconds
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "namespace": context.namespace,
                "labels": {TASK_LABEL: context.name, TASK_UID_LABEL: context.uid},
                "annotations": {SCHEDULED_ANNOTATION: models.format_timestamp(context.scheduled_at)},
                "ownerReferences": [
                    {
                        "apiVersion": models.API_VERSION,
                        "kind": models.STAN_TASK.kind,
                        "name": context.name,
                        "uid": context.uid,
                        "controller": True,
                    }
                ],
            },
            "spec": spec,
        }

    async def __call__(self, context: RunContext) -> Outcome:
        name = job_name(context.name, context.scheduled_at.timestamp())
        try:
            manifest = self.manifest(context, name)
            await kube.raw(
                client.BatchV1Api(context.api).create_namespaced_job, namespace=context.namespace, body=manifest
            )
        except ApiException as error:
            if error.status != 409:
                return Outcome(models.RunResult.FAILED, f"could not create Job {name}: {error.reason}")
        return await self.tracker.wait(context.namespace, name)


async def prune(api: client.ApiClient, namespace: str, uid: str, keep: int) -> None:
    """Delete the task's oldest Jobs beyond its run-history limit."""
    batch = client.BatchV1Api(api)
    jobs = await batch.list_namespaced_job(namespace, label_selector=f"{TASK_UID_LABEL}={uid}")
    ordered = sorted(jobs.items, key=lambda job: job.metadata.creation_timestamp, reverse=True)
    for job in ordered[keep:]:
        await kube.unless_missing(
            batch.delete_namespaced_job(job.metadata.name, namespace, propagation_policy="Background")
        )


async def stop(api: client.ApiClient, namespace: str, name: str) -> None:
    """Delete a running Job (concurrencyPolicy: Replace)."""
    await kube.unless_missing(
        client.BatchV1Api(api).delete_namespaced_job(name, namespace, propagation_policy="Background")
    )
