"""The heartbeat keeps its latest runs, so "since when is it unhealthy" has an answer over the API."""

from __future__ import annotations

import httpx
from kubernetes_asyncio import client

from stan_core import models

from . import heartbeats
from .conftest import Tenant, eventually


async def _run(api: client.ApiClient, namespace: str) -> models.StanHeartbeatStatus:
    request = await heartbeats.request_run(api, namespace)

    async def answered() -> models.StanHeartbeatStatus | None:
        current = await heartbeats.status(api, namespace)
        return current if current.runRequest == request else None

    return await eventually(answered, timeout=30)


async def test_recent_heartbeat_runs_are_kept_bounded_and_served_newest_first(
    api: client.ApiClient, http: httpx.AsyncClient, tenant: Tenant
) -> None:
    namespace = tenant.namespace
    await heartbeats.patch(
        api, namespace, {"spec": {"enabled": False, "checks": ["greets", "explodes"], "runHistoryLimit": 2}}
    )
    unhealthy = await _run(api, namespace)
    await heartbeats.patch(api, namespace, {"spec": {"checks": ["greets"]}})
    healthy = await _run(api, namespace)
    await _run(api, namespace)

    async def served() -> list[dict] | None:
        answer = await http.get("/api/v1/stan/heartbeat/runs", headers=tenant.headers)
        assert answer.status_code == 200, answer.text
        runs: list[dict] = answer.json()
        return runs if len(runs) == 2 and runs[0]["healthy"] and runs[1]["startedAt"] != runs[0]["startedAt"] else None

    runs = await eventually(served, timeout=15)
    assert [run["healthy"] for run in runs] == [True, True], "runHistoryLimit keeps the latest two"
    assert all(run["onDemand"] and run["checks"] == {"greets": "ok"} and run["issues"] == [] for run in runs)
    stored = (await heartbeats.status(api, namespace)).recentRuns
    assert [run.startedAt for run in stored] == sorted((run.startedAt for run in stored), reverse=True)
    assert healthy.recentRuns[1].healthy is False, "the run before the fix was the unhealthy one"
    assert healthy.recentRuns[1].issues == [unhealthy.issues[0].check + ": " + unhealthy.issues[0].message]
    assert healthy.recentRuns[1].checks == {"greets": "ok", "explodes": "error"}


async def test_heartbeat_runs_need_a_key(http: httpx.AsyncClient) -> None:
    unauthenticated = await http.get("/api/v1/stan/heartbeat/runs")
    assert unauthenticated.status_code == 401
