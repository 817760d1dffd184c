"""The REST facade over HTTP, against the real control plane with the operator and the facade as processes."""

from __future__ import annotations

import asyncio
import datetime
import re

import httpx
from kubernetes_asyncio import client

from stan_core import cron, ids, models

from . import tasks
from .conftest import Tenant, eventually, kubectl, new_tenant

UTC = datetime.UTC
TASK = {"name": "Daily workflow audit", "action": "audit_workflows", "schedule": "0 9 * * *", "modelId": "model_abc123"}
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
FULL_FIELDS = {"id", "name", "action", "schedule", "modelId", "status", "createdAt", "lastRunAt", "nextRunAt"}
SUMMARY_FIELDS = ["id", "name", "action", "schedule", "modelId", "status"]


async def test_create_get_list_update_delete(http: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await http.post("/api/v1/stan/tasks", json=TASK, headers=tenant.headers)
    assert created.status_code == 201, created.text
    task = created.json()
    assert task.keys() >= FULL_FIELDS
    assert {key: task[key] for key in TASK} == TASK
    assert task["id"].startswith("task_") and task["status"] == "active" and task["lastRunAt"] is None
    assert ISO_Z.match(task["createdAt"]) and ISO_Z.match(task["nextRunAt"])
    assert task["nextRunAt"] == models.format_timestamp(cron.next_tick("0 9 * * *", "UTC", datetime.datetime.now(UTC)))

    fetched = await http.get(f"/api/v1/stan/tasks/{task['id']}", headers=tenant.headers)
    assert fetched.status_code == 200 and fetched.json() == task

    listed = await http.get("/api/v1/stan/tasks", headers=tenant.headers)
    assert listed.status_code == 200
    assert listed.json() == [{key: task[key] for key in SUMMARY_FIELDS}]
    assert list(listed.json()[0]) == SUMMARY_FIELDS

    updated = await http.put(
        f"/api/v1/stan/tasks/{task['id']}",
        json={"name": "Updated task name", "schedule": "0 10 * * *"},
        headers=tenant.headers,
    )
    assert (updated.status_code, updated.json()) == (200, {"updated": True})
    after = (await http.get(f"/api/v1/stan/tasks/{task['id']}", headers=tenant.headers)).json()
    assert (after["name"], after["schedule"], after["action"]) == ("Updated task name", "0 10 * * *", "audit_workflows")
    assert after["nextRunAt"] == models.format_timestamp(
        cron.next_tick("0 10 * * *", "UTC", datetime.datetime.now(UTC))
    ), "the new schedule is in force at once"

    deleted = await http.delete(f"/api/v1/stan/tasks/{task['id']}", headers=tenant.headers)
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert (await http.get(f"/api/v1/stan/tasks/{task['id']}", headers=tenant.headers)).status_code == 404
    assert (await http.get("/api/v1/stan/tasks", headers=tenant.headers)).json() == []


async def test_pause_and_resume_show_in_status_and_next_run(http: httpx.AsyncClient, tenant: Tenant) -> None:
    task = (await http.post("/api/v1/stan/tasks", json=TASK, headers=tenant.headers)).json()
    paused = await http.post(f"/api/v1/stan/tasks/{task['id']}/pause", headers=tenant.headers)
    assert (paused.status_code, paused.json()) == (200, {"paused": True})
    now = (await http.get(f"/api/v1/stan/tasks/{task['id']}", headers=tenant.headers)).json()
    assert (now["status"], now["nextRunAt"]) == ("paused", None)
    resumed = await http.post(f"/api/v1/stan/tasks/{task['id']}/resume", headers=tenant.headers)
    assert (resumed.status_code, resumed.json()) == (200, {"resumed": True})
    now = (await http.get(f"/api/v1/stan/tasks/{task['id']}", headers=tenant.headers)).json()
    assert now["status"] == "active" and now["nextRunAt"] == task["nextRunAt"]


async def test_a_task_fires_and_its_runs_show(http: httpx.AsyncClient, tenant: Tenant) -> None:
    task = (
        await http.post("/api/v1/stan/tasks", json={**TASK, "schedule": "*/2 * * * * *"}, headers=tenant.headers)
    ).json()

    async def ran() -> list[dict] | None:
        runs = (await http.get(f"/api/v1/stan/tasks/{task['id']}/runs", headers=tenant.headers)).json()
        return runs if any(run["result"] == "succeeded" for run in runs) else None

    runs = await eventually(ran, timeout=20)
    assert {"runId", "scheduledAt", "startedAt", "finishedAt", "result", "message"} == runs[0].keys()
    detail = (await http.get(f"/api/v1/stan/tasks/{task['id']}", headers=tenant.headers)).json()
    assert detail["lastRunAt"] is not None


async def test_a_run_on_request(http: httpx.AsyncClient, tenant: Tenant) -> None:
    task = (await http.post("/api/v1/stan/tasks", json=TASK, headers=tenant.headers)).json()
    triggered = await http.post(f"/api/v1/stan/tasks/{task['id']}/run", headers=tenant.headers)
    assert triggered.status_code == 200, triggered.text
    run_id = triggered.json()["runId"]
    assert triggered.json()["result"] in ("running", "succeeded")

    async def finished() -> dict | None:
        runs = (await http.get(f"/api/v1/stan/tasks/{task['id']}/runs", headers=tenant.headers)).json()
        return next((run for run in runs if run["runId"] == run_id and run["result"] == "succeeded"), None)

    run = await eventually(finished, timeout=10)
    assert run["message"].startswith("All workflows healthy") or "tasks audited" in run["message"]
    again = await http.post(f"/api/v1/stan/tasks/{task['id']}/run", headers=tenant.headers)
    assert again.json()["runId"] != run_id, "each request is a run of its own"


async def test_kubectl_and_the_api_see_the_same_tasks(
    http: httpx.AsyncClient, tenant: Tenant, api: client.ApiClient
) -> None:
    await tasks.create(api, tenant.namespace, "from-kubectl", schedule="0 9 * * *", modelId="model_abc123")

    async def visible() -> dict | None:
        answer = await http.get("/api/v1/stan/tasks/task_from_kubectl", headers=tenant.headers)
        return answer.json() if answer.status_code == 200 else None

    seen = await eventually(visible, timeout=10)
    assert seen["name"] == "Task from-kubectl"
    created = (await http.post("/api/v1/stan/tasks", json=TASK, headers=tenant.headers)).json()
    names = kubectl("get", "stantasks", "-n", tenant.namespace, "-o", "name").stdout.split()
    assert f"stantask.stan.dev/{ids.object_name(created['id'])}" in names


async def test_tenants_see_only_their_own_tasks(http: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant) -> None:
    mine = (await http.post("/api/v1/stan/tasks", json=TASK, headers=tenant.headers)).json()
    assert (await http.get("/api/v1/stan/tasks", headers=other_tenant.headers)).json() == []
    for method, path in [
        ("GET", ""),
        ("PUT", ""),
        ("DELETE", ""),
        ("POST", "/pause"),
        ("POST", "/resume"),
        ("GET", "/runs"),
        ("POST", "/run"),
    ]:
        answer = await http.request(
            method,
            f"/api/v1/stan/tasks/{mine['id']}{path}",
            headers=other_tenant.headers,
            json={"name": "hijack"} if method == "PUT" else None,
        )
        assert answer.status_code == 404, (method, path, answer.text)
    assert (await http.get(f"/api/v1/stan/tasks/{mine['id']}", headers=tenant.headers)).json()["name"] == TASK["name"]


async def test_authentication_and_scope(
    http: httpx.AsyncClient, tenant: Tenant, api: client.ApiClient, namespace: str
) -> None:
    for headers in ({}, {"X-API-Key": "stan_nope"}, {"X-API-Key": tenant.key[:-1] + "x"}):
        answer = await http.get("/api/v1/stan/tasks", headers=headers)
        assert (answer.status_code, answer.json()) == (401, {"detail": "missing or unknown API key"})
    reader = await new_tenant(api, namespace, scopes=(), shared=True)

    async def known() -> httpx.Response | None:
        answer = await http.get("/api/v1/stan/heartbeat", headers=reader.headers)
        return answer if answer.status_code != 401 else None

    refused = await eventually(known, timeout=10)
    assert (refused.status_code, refused.json()) == (403, {"detail": "the API key lacks the stan:execute scope"})


async def test_a_revoked_key_stops_working_within_seconds(
    http: httpx.AsyncClient, tenant: Tenant, api: client.ApiClient
) -> None:
    assert (await http.get("/api/v1/stan/tasks", headers=tenant.headers)).status_code == 200
    revoked = kubectl("delete", "stanapikey", "-n", "stan-system", tenant.key_id)
    assert revoked.returncode == 0
    started = asyncio.get_running_loop().time()

    async def refused() -> bool:
        return (await http.get("/api/v1/stan/tasks", headers=tenant.headers)).status_code == 401

    await eventually(refused, timeout=10, interval=0.05)
    print(f"revoked key refused after {asyncio.get_running_loop().time() - started:.2f}s")


async def test_bad_input_is_a_422_naming_the_field(http: httpx.AsyncClient, tenant: Tenant) -> None:
    cases = [
        ({**TASK, "schedule": "61 * * * *"}, ["body", "schedule"], "invalid cron expression"),
        ({**TASK, "action": "launch_rockets"}, ["body", "action"], "unknown action 'launch_rockets'"),
        ({**TASK, "timeZone": "Mars/Olympus"}, ["body", "timeZone"], "unknown time zone"),
        ({key: value for key, value in TASK.items() if key != "modelId"}, ["body", "modelId"], "Field required"),
        ({**TASK, "name": 42}, ["body", "name"], "Input should be a valid string"),
        ({**TASK, "name": ""}, ["body", "name"], "at least 1 character"),
        ({**TASK, "surprise": 1}, ["body", "surprise"], "Extra inputs are not permitted"),
    ]
    for body, loc, message in cases:
        answer = await http.post("/api/v1/stan/tasks", json=body, headers=tenant.headers)
        assert answer.status_code == 422, (body, answer.text)
        detail = answer.json()["detail"]
        assert any(item["loc"] == loc and message in item["msg"] for item in detail), (body, detail)
    malformed = await http.post(
        "/api/v1/stan/tasks", content=b"{not json", headers={**tenant.headers, "Content-Type": "application/json"}
    )
    assert malformed.status_code == 422 and malformed.json()["detail"][0]["type"] == "json_invalid"
    assert (await http.get("/api/v1/stan/tasks", headers=tenant.headers)).json() == [], "nothing was created"
    assert (await http.get("/api/v1/stan/tasks/task_missing", headers=tenant.headers)).status_code == 404
    assert (await http.get("/api/v1/stan/tasks/not-an-id", headers=tenant.headers)).status_code == 404
    task = (await http.post("/api/v1/stan/tasks", json=TASK, headers=tenant.headers)).json()
    bad_update = await http.put(
        f"/api/v1/stan/tasks/{task['id']}", json={"schedule": "0 0 30 2 *"}, headers=tenant.headers
    )
    assert bad_update.status_code == 422 and bad_update.json()["detail"][0]["loc"] == ["body", "schedule"]


async def test_heartbeat_defaults_update_and_run(http: httpx.AsyncClient, tenant: Tenant) -> None:
    current = await http.get("/api/v1/stan/heartbeat", headers=tenant.headers)
    assert current.status_code == 200
    assert current.json() == {
        "enabled": True,
        "checks": ["workflows", "deployments", "credits"],
        "intervalMinutes": 30,
        "availableChecks": ["workflows", "deployments", "credits", "models", "explodes", "greets", "hangs"],
    }
    updated = await http.put(
        "/api/v1/stan/heartbeat",
        json={"enabled": True, "checks": ["workflows", "deployments"], "intervalMinutes": 60},
        headers=tenant.headers,
    )
    assert updated.status_code == 200
    assert {k: updated.json()[k] for k in ("enabled", "checks", "intervalMinutes")} == {
        "enabled": True,
        "checks": ["workflows", "deployments"],
        "intervalMinutes": 60,
    }
    assert (await http.get("/api/v1/stan/heartbeat", headers=tenant.headers)).json() == updated.json()

    for body, loc in (
        ({"intervalMinutes": 4}, ["body", "intervalMinutes"]),
        ({"checks": ["vibes"]}, ["body", "checks"]),
    ):
        refused = await http.put("/api/v1/stan/heartbeat", json=body, headers=tenant.headers)
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == loc, refused.text

    run = await http.post("/api/v1/stan/heartbeat/run", headers=tenant.headers)
    assert run.status_code == 200, run.text
    answer = run.json()
    assert [(r["check"], r["status"], r["message"]) for r in answer["results"]] == [
        ("workflows", "ok", "All workflows healthy"),
        ("deployments", "ok", "No deployments"),
    ]
    assert answer["issues"] == [] and answer["healthy"] is True


async def test_a_heartbeat_run_with_issues(http: httpx.AsyncClient, tenant: Tenant) -> None:
    await http.put("/api/v1/stan/heartbeat", json={"checks": ["greets", "explodes"]}, headers=tenant.headers)
    answer = (await http.post("/api/v1/stan/heartbeat/run", headers=tenant.headers)).json()
    assert answer["healthy"] is False
    assert [(i["check"], i["status"]) for i in answer["issues"]] == [("explodes", "error")]


async def test_actions_and_the_openapi_document(http: httpx.AsyncClient, tenant: Tenant) -> None:
    actions = (await http.get("/api/v1/stan/actions", headers=tenant.headers)).json()
    assert {"name": "render_report", "kind": "job"} in actions and {
        "name": "audit_workflows",
        "kind": "builtin",
    } in actions
    document = (await http.get("/openapi.json")).json()
    assert document["components"]["securitySchemes"]["APIKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "An API key made with `stan apikey create`.",
    }
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert {"401", "403", "422", "503"} <= operation["responses"].keys(), (method, path)
    assert (await http.get("/docs")).status_code == 200
    metrics = (await http.get("/metrics")).text
    assert 'stan_api_requests_total{method="GET",route="/api/v1/stan/actions",status="200"}' in metrics
