"""Validation is total at every door, against the real API server, operator and facade.

Time zones that are folders of the tz database (``America``, ``America/Argentina``) once crashed
validation: a 500 from POST, a 503 from PUT, a webhook refusal showing a file path, and an
operator handler that raised, leaving the task neither scheduled nor marked InvalidSpec.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable

import httpx
import pytest
from kubernetes_asyncio import client

from stan_controlplane import cluster
from stan_core import install, kube, models

from . import heartbeats, tasks
from .conftest import STATE_DIR, OperatorProcess, Tenant, eventually, kubectl_apply_refused

FOLDER_ZONES = ("America", "Asia", "Europe", "Etc", "America/Argentina")
PATH_LIKE_ZONES = ("..", "../etc/passwd", "/usr/share/zoneinfo/UTC", "Europe//Berlin", "Europe/", "UTC\x00", "x" * 300)
INTERNALS = ("/usr/share/zoneinfo", "site-packages", "Errno")
NAMESPACE = "unguarded"
TASK = {"name": "Daily workflow audit", "action": "audit_workflows", "schedule": "0 9 * * *", "modelId": "model_abc123"}


def _refused_naming(answer: httpx.Response, field: str, reason: str) -> None:
    assert answer.status_code == 422, answer.text
    assert any(item["loc"][-1] == field and reason in item["msg"] for item in answer.json()["detail"]), answer.text


async def test_a_folder_or_path_as_time_zone_is_a_422_naming_it(http: httpx.AsyncClient, tenant: Tenant) -> None:
    task = (await http.post("/api/v1/stan/tasks", json=TASK, headers=tenant.headers)).json()
    for zone in FOLDER_ZONES:
        created = await http.post("/api/v1/stan/tasks", json={**TASK, "timeZone": zone}, headers=tenant.headers)
        _refused_naming(created, "timeZone", f"{zone!r} is a group of time zones, not a zone")
        updated = await http.put(f"/api/v1/stan/tasks/{task['id']}", json={"timeZone": zone}, headers=tenant.headers)
        _refused_naming(updated, "timeZone", f"{zone!r} is a group of time zones, not a zone")
    for zone in PATH_LIKE_ZONES:
        created = await http.post("/api/v1/stan/tasks", json={**TASK, "timeZone": zone}, headers=tenant.headers)
        _refused_naming(created, "timeZone", "")
    listed = (await http.get("/api/v1/stan/tasks", headers=tenant.headers)).json()
    assert [item["id"] for item in listed] == [task["id"]], "nothing was created"
    assert (await http.get(f"/api/v1/stan/tasks/{task['id']}", headers=tenant.headers)).json()["timeZone"] == "UTC"


async def test_a_repeated_heartbeat_check_is_a_422_naming_checks(http: httpx.AsyncClient, tenant: Tenant) -> None:
    answer = await http.put(
        "/api/v1/stan/heartbeat", json={"checks": ["workflows", "credits", "workflows"]}, headers=tenant.headers
    )
    _refused_naming(answer, "checks", "check 'workflows' listed more than once")


async def test_kubectl_apply_of_a_folder_zone_is_refused_without_internals(namespace: str, tmp_path) -> None:
    for zone in FOLDER_ZONES:
        refusal = kubectl_apply_refused(
            tmp_path,
            f"apiVersion: {models.API_VERSION}\nkind: StanTask\n"
            f"metadata: {{name: zoned, namespace: {namespace}}}\n"
            f"spec: {{name: Nightly, action: audit_workflows, "
            f"schedule: '0 9 * * *', modelId: m, timeZone: '{zone}'}}\n",
        )
        assert (
            f'admission webhook "stantask.stan.dev" denied the request: invalid StanTask: '
            f"timeZone: {zone!r} is a group of time zones, not a zone"
        ) in refusal
        assert not any(internal in refusal for internal in INTERNALS), refusal


async def test_kubectl_apply_of_a_repeated_check_is_refused(namespace: str, tmp_path) -> None:
    refusal = kubectl_apply_refused(
        tmp_path,
        f"apiVersion: {models.API_VERSION}\nkind: StanHeartbeat\n"
        f"metadata: {{name: default, namespace: {namespace}}}\n"
        "spec: {checks: [workflows, credits, workflows]}\n",
    )
    assert "invalid StanHeartbeat: checks: check 'workflows' listed more than once; list each check once" in refusal


@pytest.fixture
async def unguarded_cluster(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[cluster.ControlPlane]:
    """A control plane of this test's own, where no admission webhook was ever registered: the
    session operator's webhook reviews StanTasks in every namespace of the session's cluster."""
    plane = cluster.start(STATE_DIR / "unguarded", fresh=True)
    monkeypatch.setenv("KUBECONFIG", str(plane.kubeconfig))
    try:
        await install.apply_crds_to_current_cluster()
        yield plane
    finally:
        plane.stop()


async def _not_ready(conditions: Awaitable[list[models.Condition]]) -> models.Condition | None:
    return next((c for c in await conditions if c.type == "Ready" and c.status == "False"), None)


async def _task_conditions(api: client.ApiClient, name: str) -> list[models.Condition]:
    return (await tasks.status(api, NAMESPACE, name)).conditions


async def _heartbeat_conditions(api: client.ApiClient) -> list[models.Condition]:
    return (await heartbeats.status(api, NAMESPACE)).conditions


async def test_without_the_webhook_the_operator_marks_a_folder_zone_invalid_and_goes_on(
    unguarded_cluster: cluster.ControlPlane,
) -> None:
    log = STATE_DIR / "logs" / "operator-unguarded.log"
    log_start = log.stat().st_size if log.exists() else 0
    async with await kube.api_client() as api:
        # Before the operator starts: kopf lists the namespaces, then watches them, and misses one created
        # between the two.
        await client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
    operator = OperatorProcess("unguarded", "--namespace", NAMESPACE, kubeconfig=unguarded_cluster.kubeconfig)
    try:
        async with await kube.api_client() as api:
            for number, zone in enumerate(FOLDER_ZONES):
                await tasks.create(api, NAMESPACE, f"zoned-{number}", schedule="0 9 * * *", timeZone=zone)
            await heartbeats.create(api, NAMESPACE, checks=["workflows", "workflows"])

            for number, zone in enumerate(FOLDER_ZONES):
                condition = await eventually(lambda name=f"zoned-{number}": _not_ready(_task_conditions(api, name)))
                assert condition.reason == "InvalidSpec"
                assert condition.message.startswith(f"timeZone: {zone!r} is a group of time zones, not a zone")
                assert (await tasks.status(api, NAMESPACE, f"zoned-{number}")).nextRunAt is None
            await tasks.events_posted(api, NAMESPACE, "zoned-0", "InvalidSpec")
            condition = await eventually(lambda: _not_ready(_heartbeat_conditions(api)))
            assert (condition.reason, condition.message) == (
                "InvalidSpec",
                "checks: check 'workflows' listed more than once; list each check once",
            )

            await tasks.create(api, NAMESPACE, "valid", schedule="0 9 * * *", timeZone="America/New_York")

            async def scheduled() -> models.StanTaskStatus | None:
                status = await tasks.status(api, NAMESPACE, "valid")
                return status if status.nextRunAt else None

            await eventually(scheduled)
        assert operator.process.poll() is None, "the operator is still running"
        assert b"Traceback" not in log.read_bytes()[log_start:], operator.log_tail()
    finally:
        operator.stop()
