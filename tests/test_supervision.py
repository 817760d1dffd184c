"""No background loop dies in silence: the supervisor restarts it and logs why, and the operator's liveness
probe turns unhealthy while a loop keeps failing or is stuck. The supervisor alone runs on a clock the test
sets; the probe is read from the real operator process."""

from __future__ import annotations

import asyncio
import datetime
import os
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes_asyncio import client

from stan_core import kube, models
from stan_operator import supervision

from . import tasks
from .conftest import OPERATOR_CONFIG, STATE_DIR, OperatorProcess, eventually, kubectl


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_failing_loop_is_restarted_and_then_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervision, "RESTART_PAUSES", (0.0,))
    clock = Clock()
    supervisor = supervision.Supervisor(clock)
    starts = 0

    async def flaky(beat: supervision.Beat) -> None:
        nonlocal starts
        starts += 1
        raise RuntimeError(f"broken {starts}")

    supervisor.keep("flaky", flaky)
    await eventually(lambda: asyncio.sleep(0, starts >= supervision.FAILURES_TOLERATED), timeout=5, interval=0.01)
    with pytest.raises(supervision.Unhealthy, match=r"flaky: failed \d+ times in 300s, last: RuntimeError: broken"):
        supervisor.health()
    supervisor.stop()


async def test_failures_long_past_are_forgiven(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervision, "RESTART_PAUSES", (0.0,))
    clock = Clock()
    supervisor = supervision.Supervisor(clock)
    failed = asyncio.Event()

    async def fails_twice_then_runs(beat: supervision.Beat) -> None:
        if not failed.is_set():
            failed.set()
            raise RuntimeError("once")
        await asyncio.Event().wait()

    supervisor.keep("recovering", fails_twice_then_runs)
    await failed.wait()
    await asyncio.sleep(0.01)
    assert supervisor.health()["loops"] == "1"
    clock.now += supervision.FAILURE_WINDOW_SECONDS + 1
    assert supervisor.health()["loops"] == "1"
    supervisor.stop()


async def test_a_loop_that_stops_beating_is_stuck() -> None:
    clock = Clock()
    supervisor = supervision.Supervisor(clock)

    async def wedged(beat: supervision.Beat) -> None:
        beat()
        await asyncio.Event().wait()

    supervisor.keep("wedged", wedged, stale_after=60)
    await asyncio.sleep(0.01)
    clock.now += 59
    supervisor.health()
    clock.now += 2
    with pytest.raises(supervision.Unhealthy, match="wedged: no progress for 61s"):
        supervisor.health()
    supervisor.stop()


async def test_one_off_work_that_fails_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    supervisor = supervision.Supervisor()

    async def breaks() -> None:
        raise ValueError("lost")

    await asyncio.gather(supervisor.spawn("a run", breaks()), return_exceptions=True)
    assert "a run failed" in caplog.text and "ValueError: lost" in caplog.text


# Everything a leading operator needs but writing a task's status: once it leads, settling the run that
# a previous operator left running fails, and the scheduler's loop with it, at every restart.
ROLE_RULES = [
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
    {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "verbs": ["get", "list", "watch"],
    },
    {
        "apiGroups": [models.GROUP],
        "resources": ["stantasks", "stanheartbeats"],
        "verbs": ["get", "list", "watch", "patch"],
    },
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
]


def _kubeconfig_of(service_account: str, namespace: str, directory: Path) -> Path:
    token = kubectl("create", "token", service_account, "--namespace", namespace).stdout.strip()
    admin = yaml.safe_load(Path(os.environ["KUBECONFIG"]).read_text())
    cluster_entry = admin["clusters"][0]
    path = directory / f"{service_account}.kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "sa",
                "clusters": [cluster_entry],
                "users": [{"name": "sa", "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": cluster_entry["name"], "user": "sa"}}],
            }
        )
    )
    return path


def _liveness(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


async def test_the_liveness_probe_fails_while_a_loop_keeps_failing(
    api: client.ApiClient, private_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAN_NAMESPACE", private_namespace)
    name = f"stan-test-{uuid.uuid4().hex[:6]}"
    rbac = client.RbacAuthorizationV1Api(api)
    await client.CoreV1Api(api).create_namespaced_service_account(private_namespace, {"metadata": {"name": name}})
    await rbac.create_cluster_role({"metadata": {"name": name}, "rules": ROLE_RULES})
    await rbac.create_cluster_role_binding(
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": private_namespace}],
        }
    )
    try:
        await tasks.create(api, private_namespace, "left-running", schedule="0 9 * * *")
        tick = models.format_timestamp(datetime.datetime.now(datetime.UTC).replace(microsecond=0))
        await kube.Objects(api, models.STAN_TASK).patch_status(
            private_namespace,
            "left-running",
            {
                "status": {
                    "lastScheduledAt": tick,
                    "recentRuns": [
                        {"runId": "run_orphan", "scheduledAt": tick, "startedAt": tick, "result": "running"}
                    ],
                }
            },
        )
        # Another replica holds the Lease as the operator starts: it sees the task as a standby, and leads
        # (and settles the orphaned run) once that Lease has gone a lease duration without renewal.
        now = datetime.datetime.now(datetime.UTC)
        await client.CoordinationV1Api(api).create_namespaced_lease(
            private_namespace,
            client.V1Lease(
                metadata=client.V1ObjectMeta(name="stan-operator"),
                spec=client.V1LeaseSpec(
                    holder_identity="elsewhere", lease_duration_seconds=15, acquire_time=now, renew_time=now
                ),
            ),
        )
        operator = OperatorProcess(
            f"{private_namespace}-unwell",
            "--namespace",
            private_namespace,
            "--leader-election",
            config={**OPERATOR_CONFIG, "jobActions": {}},
            kubeconfig=_kubeconfig_of(name, private_namespace, STATE_DIR),
        )
        try:
            assert _liveness(operator.liveness) == 200
            await eventually(
                lambda: asyncio.to_thread(lambda: _liveness(operator.liveness) == 500), timeout=90, interval=1
            )
            log = operator.log_tail(400)
            assert "scheduler failed; restarting it" in log and "Forbidden" in log
        finally:
            operator.stop()
    finally:
        await rbac.delete_cluster_role_binding(name)
        await rbac.delete_cluster_role(name)
