"""Job-backed actions: one Job per tick, owned by the task, whose completion is the run's result."""
from __future__ import annotations

import datetime

from kubernetes_asyncio import client

from stan_operator import models
from stan_operator.actions import jobs

from . import tasks
from .conftest import OperatorProcess, eventually

UTC = datetime.timezone.utc
RESTRICTED = {"runAsNonRoot": True, "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
              "seccompProfile": {"type": "RuntimeDefault"}}
"""The restricted Pod Security Standard's container settings, written out as a reviewer reads them."""


async def _jobs(api: client.ApiClient, namespace: str, uid: str) -> list[client.V1Job]:
    listing = await client.BatchV1Api(api).list_namespaced_job(
        namespace, label_selector=f"{jobs.TASK_UID_LABEL}={uid}")
    return sorted(listing.items, key=lambda job: job.metadata.name)


async def _finish_job(api: client.ApiClient, job: client.V1Job, *, succeeded: bool) -> None:
    """Write the terminal status the Job controller would write once its Pod ended (no kubelet runs here)."""
    now = datetime.datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if succeeded:
        status = {"completionTime": now, "succeeded": 1, "active": 0, "ready": 0,
                  "terminating": 0, "uncountedTerminatedPods": {},
                  "conditions": [
                      {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
                       "lastTransitionTime": now, "lastProbeTime": now},
                      {"type": "Complete", "status": "True", "reason": "CompletionsReached",
                       "lastTransitionTime": now, "lastProbeTime": now}]}
    else:
        status = {"failed": 1, "active": 0, "ready": 0, "terminating": 0,
                  "uncountedTerminatedPods": {},
                  "conditions": [
                      {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
                       "message": "Job has reached the specified backoff limit",
                       "lastTransitionTime": now, "lastProbeTime": now},
                      {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                       "message": "Job has reached the specified backoff limit",
                       "lastTransitionTime": now, "lastProbeTime": now}]}
    await client.BatchV1Api(api).patch_namespaced_job_status(
        job.metadata.name, job.metadata.namespace, {"status": status}, _content_type="application/merge-patch+json")


async def test_a_job_backed_tick_creates_an_owned_job_and_follows_it(api: client.ApiClient,
                                                                     namespace: str) -> None:
    task = await tasks.create(api, namespace, "reporter", action="render_report", schedule="*/3 * * * * *",
                              modelId="model_xyz", concurrencyPolicy="Forbid", runHistoryLimit=1)
    uid = task["metadata"]["uid"]
    job = (await eventually(lambda: _jobs(api, namespace, uid)))[0]

    status = await tasks.status(api, namespace, "reporter")
    run = status.lastRun
    assert run is not None and run.result == models.RunResult.RUNNING
    env = {var.name: var.value for var in job.spec.template.spec.containers[0].env}
    assert env == {"STAN_TASK_ID": "task_reporter", "STAN_ACTION": "render_report", "STAN_MODEL_ID": "model_xyz",
                   "STAN_SCHEDULED_AT": models.format_timestamp(run.scheduledAt), "STAN_RUN_ID": run.runId,
                   "REPORT_FORMAT": "pdf"}
    container = job.spec.template.spec.containers[0]
    assert (container.image, container.command) == ("registry.invalid/stan/report:1", ["/bin/report"])
    assert api.sanitize_for_serialization(container.security_context) == RESTRICTED, "restricted by default"
    assert job.spec.template.spec.automount_service_account_token is False, "no API credential by default"
    owner = job.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid, owner.controller) == ("StanTask", "reporter", uid, True)
    assert job.metadata.name == f"reporter-{int(run.scheduledAt.timestamp())}"

    async def skipped_while_running() -> models.StanTaskStatus | None:
        current = await tasks.status(api, namespace, "reporter")
        return current if any(r.result == models.RunResult.SKIPPED for r in current.recentRuns) else None

    skipped = await eventually(skipped_while_running, timeout=15)
    assert "previous run is still active (concurrencyPolicy: Forbid)" in \
        next(r.message for r in skipped.recentRuns if r.result == models.RunResult.SKIPPED)
    assert len(await _jobs(api, namespace, uid)) == 1, "a skipped tick creates no Job"

    await _finish_job(api, job, succeeded=False)

    async def run_result(run_id: str) -> models.Run | None:
        current = await tasks.status(api, namespace, "reporter")
        found = next((r for r in current.recentRuns if r.runId == run_id), None)
        return found if found and found.result != models.RunResult.RUNNING else None

    failed = await eventually(lambda: run_result(run.runId), timeout=15)
    assert failed.result == models.RunResult.FAILED
    assert failed.message == f"Job {job.metadata.name} failed: Job has reached the specified backoff limit"
    await tasks.events_posted(api, namespace, "reporter", "Failed")

    async def second_job() -> list[client.V1Job]:
        return [j for j in await _jobs(api, namespace, uid) if j.metadata.name != job.metadata.name]

    following = (await eventually(second_job, timeout=15))[0]
    following_run = next(r for r in (await tasks.status(api, namespace, "reporter")).recentRuns
                         if r.result == models.RunResult.RUNNING)
    await _finish_job(api, following, succeeded=True)
    succeeded = await eventually(lambda: run_result(following_run.runId), timeout=15)
    assert succeeded.result == models.RunResult.SUCCEEDED
    assert succeeded.message == f"Job {following.metadata.name} completed"

    async def pruned() -> list[str]:
        names = [j.metadata.name for j in await _jobs(api, namespace, uid)]
        return names if job.metadata.name not in names else []

    assert following.metadata.name in await eventually(pruned, timeout=15), "Jobs beyond runHistoryLimit go"

    await tasks.delete(api, namespace, "reporter")

    async def jobs_gone() -> bool:
        return not await _jobs(api, namespace, uid)

    await eventually(jobs_gone, timeout=30)


async def test_replace_stops_the_earlier_run_and_its_job(api: client.ApiClient, namespace: str) -> None:
    task = await tasks.create(api, namespace, "replacer", action="render_report", schedule="*/3 * * * * *",
                              modelId="model_xyz", concurrencyPolicy="Replace", runHistoryLimit=10)
    uid = task["metadata"]["uid"]

    async def replaced() -> models.StanTaskStatus | None:
        current = await tasks.status(api, namespace, "replacer")
        return current if len([r for r in current.recentRuns if r.result == models.RunResult.FAILED]) >= 2 else None

    status = await eventually(replaced, timeout=30)
    failed = [run for run in status.recentRuns if run.result == models.RunResult.FAILED]
    assert all(run.message == "replaced by a newer run (concurrencyPolicy: Replace)" for run in failed)
    newest = max(run.scheduledAt for run in status.recentRuns)
    assert all(run.scheduledAt < newest for run in failed), "only earlier runs are replaced"
    running = [run for run in status.recentRuns if run.result == models.RunResult.RUNNING]
    assert len(running) <= 2, f"at most the newest run and one whose record is on its way: {running}"

    async def only_newest_jobs() -> list[client.V1Job] | None:
        found = await _jobs(api, namespace, uid)
        names = {job.metadata.name for job in found}
        return found if all(f"replacer-{int(run.scheduledAt.timestamp())}" not in names for run in failed) else None

    await eventually(only_newest_jobs, timeout=15)


async def test_a_job_action_may_loosen_its_security_context(api: client.ApiClient, private_namespace: str) -> None:
    """The security context replaces the default as a whole, and the token is mounted when asked for."""
    loosened = {"runAsUser": 0, "runAsNonRoot": False}
    operator = OperatorProcess(f"jobs-{private_namespace}", "--namespace", private_namespace, config={
        "allowSecondSchedules": True,
        "jobActions": {"render_report": {"image": "registry.invalid/stan/report:1", "securityContext": loosened,
                                         "automountServiceAccountToken": True}}})
    try:
        task = await tasks.create(api, private_namespace, "rooted", action="render_report",
                                  schedule="*/2 * * * * *", modelId="model_xyz")
        job = (await eventually(lambda: _jobs(api, private_namespace, task["metadata"]["uid"])))[0]
    finally:
        operator.stop()
    pod = job.spec.template.spec
    assert api.sanitize_for_serialization(pod.containers[0].security_context) == loosened
    assert pod.automount_service_account_token is True
