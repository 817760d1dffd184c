"""Job-backed actions: one Job per tick, owned by the task, whose completion is the run's result.

With a node, the Jobs run the session's Job action (``conftest.REPORT_SCRIPT``) in real containers; the
task's model says what the container does. Without one, their Pods stay Pending, and the tests that would
need them finished write the status the Job controller would, instead.
"""

from __future__ import annotations

import datetime

from kubernetes_asyncio import client

from stan_core import models
from stan_operator.actions import jobs

from . import tasks
from .conftest import OPERATOR_CONFIG, POD_IMAGE, REPORT_SCRIPT, OperatorProcess, eventually, with_node, without_node

UTC = datetime.UTC
RESTRICTED = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
"""The restricted Pod Security Standard's container settings, written out as a reviewer reads them."""
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
"""The label the Job controller puts on a Job's Pods."""
FORBIDDEN = "the previous run is still active (concurrencyPolicy: Forbid)"
REPLACED = "replaced by a newer run (concurrencyPolicy: Replace)"


async def _jobs(api: client.ApiClient, namespace: str, uid: str) -> list[client.V1Job]:
    listing = await client.BatchV1Api(api).list_namespaced_job(namespace, label_selector=f"{jobs.TASK_UID_LABEL}={uid}")
    return sorted(listing.items, key=lambda job: job.metadata.name)


async def _run_of(api: client.ApiClient, namespace: str, task: str, job: client.V1Job) -> models.Run:
    """The run whose tick made ``job``."""
    scheduled = job.metadata.annotations[jobs.SCHEDULED_ANNOTATION]
    runs = (await tasks.status(api, namespace, task)).recentRuns
    return next(run for run in runs if models.format_timestamp(run.scheduledAt) == scheduled)


async def _finished(api: client.ApiClient, namespace: str, task: str, run_id: str) -> models.Run | None:
    """The run's record once it has a result."""
    runs = (await tasks.status(api, namespace, task)).recentRuns
    found = next((run for run in runs if run.runId == run_id), None)
    return found if found and found.result != models.RunResult.RUNNING else None


async def _pods(api: client.ApiClient, namespace: str, job: client.V1Job) -> list[client.V1Pod]:
    listing = await client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector=f"{JOB_NAME_LABEL}={job.metadata.name}"
    )
    return listing.items


async def _running_pod(api: client.ApiClient, namespace: str, job: client.V1Job) -> client.V1Pod | None:
    return next((pod for pod in await _pods(api, namespace, job) if pod.status.phase == "Running"), None)


def _since(instant: datetime.datetime) -> float:
    return (datetime.datetime.now(UTC) - instant).total_seconds()


def _condition(job: client.V1Job, kind: str) -> client.V1JobCondition:
    return next(condition for condition in job.status.conditions if condition.type == kind)


async def test_a_job_backed_tick_creates_an_owned_job_with_the_runs_environment(
    api: client.ApiClient, namespace: str
) -> None:
    task = await tasks.create(
        api,
        namespace,
        "reporter",
        action="render_report",
        schedule="*/3 * * * * *",
        modelId="model_xyz",
        concurrencyPolicy="Forbid",
    )
    uid = task["metadata"]["uid"]
    job = (await eventually(lambda: _jobs(api, namespace, uid)))[0]
    run = await _run_of(api, namespace, "reporter", job)

    env = {var.name: var.value for var in job.spec.template.spec.containers[0].env}
    assert env == {
        "STAN_TASK_ID": "task_reporter",
        "STAN_ACTION": "render_report",
        "STAN_MODEL_ID": "model_xyz",
        "STAN_SCHEDULED_AT": models.format_timestamp(run.scheduledAt),
        "STAN_RUN_ID": run.runId,
        "REPORT_FORMAT": "pdf",
    }
    container = job.spec.template.spec.containers[0]
    assert (container.image, container.command) == (POD_IMAGE, ["/bin/sh", "-c", REPORT_SCRIPT])
    assert api.sanitize_for_serialization(container.security_context) == RESTRICTED, "restricted by default"
    assert job.spec.template.spec.automount_service_account_token is False, "no API credential by default"
    owner = job.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid, owner.controller) == ("StanTask", "reporter", uid, True)
    assert job.metadata.name == f"reporter-{int(run.scheduledAt.timestamp())}"

    await tasks.delete(api, namespace, "reporter")

    async def jobs_gone() -> bool:
        return not await _jobs(api, namespace, uid)

    await eventually(jobs_gone, timeout=30)


@with_node
async def test_a_container_exiting_0_succeeds_its_run(api: client.ApiClient, namespace: str) -> None:
    """The container runs as the image's non-root user under the restricted default, sees the run's
    environment, and its exit 0 is the run's success; Jobs beyond runHistoryLimit go."""
    task = await tasks.create(
        api,
        namespace,
        "reporter",
        action="render_report",
        schedule="*/2 * * * * *",
        modelId="model_xyz",
        concurrencyPolicy="Forbid",
        runHistoryLimit=2,
    )
    uid = task["metadata"]["uid"]
    job = (await eventually(lambda: _jobs(api, namespace, uid)))[0]
    run = await _run_of(api, namespace, "reporter", job)

    succeeded = await eventually(lambda: _finished(api, namespace, "reporter", run.runId), timeout=30, interval=0.1)
    assert (succeeded.result, succeeded.message) == (models.RunResult.SUCCEEDED, f"Job {job.metadata.name} completed")
    (pod,) = await _pods(api, namespace, job)
    log = await client.CoreV1Api(api).read_namespaced_pod_log(pod.metadata.name, namespace)
    assert log == (
        f"task_reporter render_report model_xyz {models.format_timestamp(run.scheduledAt)} {run.runId} pdf as 65534\n"
    ), "the image's user, under the restricted default"
    await tasks.events_posted(api, namespace, "reporter", "Succeeded")
    print(
        f"a Job exiting 0: run recorded succeeded "
        f"{(succeeded.finishedAt - succeeded.scheduledAt).total_seconds():.1f}s after its tick"
    )

    async def pruned() -> list[str]:
        names = [j.metadata.name for j in await _jobs(api, namespace, uid)]
        return names if job.metadata.name not in names else []

    remaining = await eventually(pruned, timeout=60)
    assert len(remaining) <= 3, f"runHistoryLimit Jobs, and one a tick may have made since: {remaining}"


@with_node
async def test_a_container_exiting_non_zero_fails_its_run(api: client.ApiClient, namespace: str) -> None:
    task = await tasks.create(
        api,
        namespace,
        "failing",
        action="render_report",
        schedule="*/3 * * * * *",
        modelId="exit-7",
        concurrencyPolicy="Forbid",
    )
    job = (await eventually(lambda: _jobs(api, namespace, task["metadata"]["uid"])))[0]
    run = await _run_of(api, namespace, "failing", job)

    failed = await eventually(lambda: _finished(api, namespace, "failing", run.runId), timeout=30, interval=0.1)
    assert failed.result == models.RunResult.FAILED
    assert failed.message == f"Job {job.metadata.name} failed: Job has reached the specified backoff limit"
    finished_job = await client.BatchV1Api(api).read_namespaced_job(job.metadata.name, namespace)
    assert _condition(finished_job, "Failed").reason == "BackoffLimitExceeded"
    (pod,) = await _pods(api, namespace, job)
    assert pod.status.container_statuses[0].state.terminated.exit_code == 7
    assert (
        await client.CoreV1Api(api).read_namespaced_pod_log(pod.metadata.name, namespace)
        == "giving up on task_failing\n"
    )
    await tasks.events_posted(api, namespace, "failing", "Failed")
    print(
        f"a Job exiting 7: run recorded failed {(failed.finishedAt - failed.scheduledAt).total_seconds():.1f}s "
        f"after its tick"
    )


@with_node
async def test_a_job_past_its_deadline_fails_its_run(api: client.ApiClient, private_namespace: str) -> None:
    """activeDeadlineSeconds: the Job controller stops the container and fails the Job."""
    action = {**OPERATOR_CONFIG["jobActions"]["render_report"], "activeDeadlineSeconds": 2}
    operator = OperatorProcess(
        f"deadline-{private_namespace}",
        "--namespace",
        private_namespace,
        config={**OPERATOR_CONFIG, "jobActions": {"render_report": action}},
    )
    try:
        task = await tasks.create(
            api,
            private_namespace,
            "slow",
            action="render_report",
            schedule="*/5 * * * * *",
            modelId="sleep-3600",
            concurrencyPolicy="Forbid",
        )
        job = (await eventually(lambda: _jobs(api, private_namespace, task["metadata"]["uid"])))[0]
        run = await _run_of(api, private_namespace, "slow", job)
        await eventually(lambda: _running_pod(api, private_namespace, job), timeout=30, interval=0.1)

        failed = await eventually(
            lambda: _finished(api, private_namespace, "slow", run.runId), timeout=30, interval=0.1
        )
        assert failed.result == models.RunResult.FAILED
        assert failed.message == f"Job {job.metadata.name} failed: Job was active longer than specified deadline"
        finished_job = await client.BatchV1Api(api).read_namespaced_job(job.metadata.name, private_namespace)
        assert _condition(finished_job, "Failed").reason == "DeadlineExceeded"
        assert not await _running_pod(api, private_namespace, finished_job), "its container was stopped"
        print(
            f"a Job past its 2s deadline: run recorded failed "
            f"{(failed.finishedAt - failed.scheduledAt).total_seconds():.1f}s after its tick"
        )
    finally:
        operator.stop()


@with_node
async def test_forbid_skips_the_ticks_that_come_while_the_job_runs(api: client.ApiClient, namespace: str) -> None:
    task = await tasks.create(
        api,
        namespace,
        "forbidding",
        action="render_report",
        schedule="*/2 * * * * *",
        modelId="sleep-6",
        concurrencyPolicy="Forbid",
        runHistoryLimit=20,
    )
    uid = task["metadata"]["uid"]
    job = (await eventually(lambda: _jobs(api, namespace, uid)))[0]
    run = await _run_of(api, namespace, "forbidding", job)
    await eventually(lambda: _running_pod(api, namespace, job), timeout=30, interval=0.1)
    print(f"a Job's Pod running {_since(run.scheduledAt):.1f}s after its tick")

    async def skipped() -> models.Run | None:
        runs = (await tasks.status(api, namespace, "forbidding")).recentRuns
        return next((r for r in runs if r.result == models.RunResult.SKIPPED), None)

    skip = await eventually(skipped, timeout=15)
    assert skip.message == FORBIDDEN and skip.scheduledAt > run.scheduledAt
    assert await _running_pod(api, namespace, job), "skipped while the container ran"
    assert [j.metadata.name for j in await _jobs(api, namespace, uid)] == [job.metadata.name], (
        "a skipped tick creates no Job"
    )

    succeeded = await eventually(lambda: _finished(api, namespace, "forbidding", run.runId), timeout=30)
    assert succeeded.result == models.RunResult.SUCCEEDED

    async def next_job() -> list[client.V1Job]:
        return [j for j in await _jobs(api, namespace, uid) if j.metadata.name != job.metadata.name]

    await eventually(next_job, timeout=15)
    await tasks.patch_spec(api, namespace, "forbidding", paused=True)


@with_node
async def test_replace_kills_the_running_pod(api: client.ApiClient, namespace: str) -> None:
    task = await tasks.create(
        api,
        namespace,
        "replacer",
        action="render_report",
        schedule="*/4 * * * * *",
        modelId="sleep-3600",
        concurrencyPolicy="Replace",
        runHistoryLimit=20,
    )
    uid = task["metadata"]["uid"]

    async def running() -> tuple[client.V1Job, client.V1Pod] | None:
        for job in await _jobs(api, namespace, uid):
            if pod := await _running_pod(api, namespace, job):
                return job, pod
        return None

    job, pod = await eventually(running, timeout=30, interval=0.1)
    run = await _run_of(api, namespace, "replacer", job)
    replaced = await eventually(lambda: _finished(api, namespace, "replacer", run.runId), timeout=15, interval=0.1)
    assert (replaced.result, replaced.message) == (models.RunResult.FAILED, REPLACED)
    runs = (await tasks.status(api, namespace, "replacer")).recentRuns
    assert any(r.scheduledAt > run.scheduledAt for r in runs), "a newer run replaced it"

    async def pod_gone() -> bool:
        return pod.metadata.name not in {p.metadata.name for p in await _pods(api, namespace, job)}

    await eventually(pod_gone, timeout=30, interval=0.1)
    print(f"the replaced run's Pod gone {_since(replaced.finishedAt):.1f}s after the run was recorded replaced")
    assert job.metadata.name not in {j.metadata.name for j in await _jobs(api, namespace, uid)}, "and its Job"
    await tasks.patch_spec(api, namespace, "replacer", paused=True)


async def _finish_job(api: client.ApiClient, job: client.V1Job, *, succeeded: bool) -> None:
    """Write the terminal status the Job controller would write once its Pod ended (no kubelet runs here)."""
    now = datetime.datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if succeeded:
        status = {
            "completionTime": now,
            "succeeded": 1,
            "active": 0,
            "ready": 0,
            "terminating": 0,
            "uncountedTerminatedPods": {},
            "conditions": [
                {
                    "type": "SuccessCriteriaMet",
                    "status": "True",
                    "reason": "CompletionsReached",
                    "lastTransitionTime": now,
                    "lastProbeTime": now,
                },
                {
                    "type": "Complete",
                    "status": "True",
                    "reason": "CompletionsReached",
                    "lastTransitionTime": now,
                    "lastProbeTime": now,
                },
            ],
        }
    else:
        status = {
            "failed": 1,
            "active": 0,
            "ready": 0,
            "terminating": 0,
            "uncountedTerminatedPods": {},
            "conditions": [
                {
                    "type": "FailureTarget",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                    "lastTransitionTime": now,
                    "lastProbeTime": now,
                },
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                    "lastTransitionTime": now,
                    "lastProbeTime": now,
                },
            ],
        }
    await client.BatchV1Api(api).patch_namespaced_job_status(
        job.metadata.name, job.metadata.namespace, {"status": status}, _content_type="application/merge-patch+json"
    )


@without_node
async def test_a_job_is_followed_to_its_end_written_as_the_job_controller_would(
    api: client.ApiClient, namespace: str
) -> None:
    task = await tasks.create(
        api,
        namespace,
        "reporter",
        action="render_report",
        schedule="*/3 * * * * *",
        modelId="model_xyz",
        concurrencyPolicy="Forbid",
        runHistoryLimit=1,
    )
    uid = task["metadata"]["uid"]
    job = (await eventually(lambda: _jobs(api, namespace, uid)))[0]
    run = await _run_of(api, namespace, "reporter", job)

    async def skipped_while_running() -> models.StanTaskStatus | None:
        current = await tasks.status(api, namespace, "reporter")
        return current if any(r.result == models.RunResult.SKIPPED for r in current.recentRuns) else None

    skipped = await eventually(skipped_while_running, timeout=15)
    assert next(r.message for r in skipped.recentRuns if r.result == models.RunResult.SKIPPED) == FORBIDDEN
    assert len(await _jobs(api, namespace, uid)) == 1, "a skipped tick creates no Job"

    await _finish_job(api, job, succeeded=False)
    failed = await eventually(lambda: _finished(api, namespace, "reporter", run.runId), timeout=15)
    assert failed.result == models.RunResult.FAILED
    assert failed.message == f"Job {job.metadata.name} failed: Job has reached the specified backoff limit"
    await tasks.events_posted(api, namespace, "reporter", "Failed")

    async def second_job() -> list[client.V1Job]:
        return [j for j in await _jobs(api, namespace, uid) if j.metadata.name != job.metadata.name]

    following = (await eventually(second_job, timeout=15))[0]
    following_run = await _run_of(api, namespace, "reporter", following)
    await _finish_job(api, following, succeeded=True)
    succeeded = await eventually(lambda: _finished(api, namespace, "reporter", following_run.runId), timeout=15)
    assert succeeded.result == models.RunResult.SUCCEEDED
    assert succeeded.message == f"Job {following.metadata.name} completed"

    async def pruned() -> list[str]:
        names = [j.metadata.name for j in await _jobs(api, namespace, uid)]
        return names if job.metadata.name not in names else []

    assert following.metadata.name in await eventually(pruned, timeout=15), "Jobs beyond runHistoryLimit go"


@without_node
async def test_replace_stops_the_earlier_run_and_its_job(api: client.ApiClient, namespace: str) -> None:
    task = await tasks.create(
        api,
        namespace,
        "replacer",
        action="render_report",
        schedule="*/3 * * * * *",
        modelId="model_xyz",
        concurrencyPolicy="Replace",
        runHistoryLimit=10,
    )
    uid = task["metadata"]["uid"]

    async def replaced() -> models.StanTaskStatus | None:
        current = await tasks.status(api, namespace, "replacer")
        return current if len([r for r in current.recentRuns if r.result == models.RunResult.FAILED]) >= 2 else None

    status = await eventually(replaced, timeout=30)
    failed = [run for run in status.recentRuns if run.result == models.RunResult.FAILED]
    assert all(run.message == REPLACED for run in failed)
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
    action = {
        **OPERATOR_CONFIG["jobActions"]["render_report"],
        "securityContext": loosened,
        "automountServiceAccountToken": True,
    }
    operator = OperatorProcess(
        f"jobs-{private_namespace}",
        "--namespace",
        private_namespace,
        config={"allowSecondSchedules": True, "jobActions": {"render_report": action}},
    )
    try:
        task = await tasks.create(
            api, private_namespace, "rooted", action="render_report", schedule="*/2 * * * * *", modelId="model_xyz"
        )
        job = (await eventually(lambda: _jobs(api, private_namespace, task["metadata"]["uid"])))[0]
    finally:
        operator.stop()
    pod = job.spec.template.spec
    assert api.sanitize_for_serialization(pod.containers[0].security_context) == loosened
    assert pod.automount_service_account_token is True
