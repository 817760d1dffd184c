"""Schedules beyond CronJob's five fields, against the real API server, operator and facade: shorthands,
jitter, a window and maxRuns, the upcoming runs, and no extra firing on resume."""

from __future__ import annotations

import asyncio
import datetime

import httpx
from kubernetes_asyncio import client

from stan_core import cron, ids, models, schedule

from . import tasks
from .conftest import Tenant, eventually

UTC = datetime.UTC
TASKS = "/api/v1/stan/tasks"
EVERY_2S = "*/2 * * * * *"
TASK = {"name": "Audit", "action": "audit_workflows", "modelId": "model_abc123"}


async def test_a_shorthand_is_accepted_and_what_is_not_is_refused_with_the_reason(
    http: httpx.AsyncClient, tenant: Tenant
) -> None:
    created = await http.post(TASKS, headers=tenant.headers, json={**TASK, "schedule": "@daily"})
    assert created.status_code == 201, created.text
    next_run = datetime.datetime.fromisoformat(created.json()["nextRunAt"])
    assert next_run == cron.next_tick("0 0 * * *", "UTC", datetime.datetime.now(UTC))
    refused = await http.post(TASKS, headers=tenant.headers, json={**TASK, "schedule": "@reboot"})
    assert refused.status_code == 422
    assert refused.json()["detail"][0] == {
        "loc": ["body", "schedule"],
        "msg": "'@reboot' is not supported: a task runs on a schedule, and has no boot",
        "type": "value_error",
    }


async def test_max_runs_with_jitter_fires_that_many_then_finishes(
    api: client.ApiClient, namespace: str, http: httpx.AsyncClient, tenant: Tenant
) -> None:
    answer = await http.post(
        TASKS, headers=tenant.headers, json={**TASK, "schedule": EVERY_2S, "jitterSeconds": 1, "maxRuns": 2}
    )
    assert answer.status_code == 201, answer.text
    task_id = answer.json()["id"]
    upcoming = await http.get(f"{TASKS}/{task_id}/upcoming", headers=tenant.headers, params={"count": 5})
    assert upcoming.status_code == 200 and len(upcoming.json()["runs"]) <= 2, "no more than maxRuns are listed"
    name = ids.object_name(task_id)
    assert name is not None

    async def finished() -> models.StanTaskStatus | None:
        status = await tasks.status(api, namespace, name)
        return status if status.remainingRuns == 0 and status.lastSuccessfulAt is not None else None

    status = await eventually(finished, timeout=30)
    await asyncio.sleep(3)
    status = await tasks.status(api, namespace, name)
    assert len(status.recentRuns) == 2 and status.nextRunAt is None and status.status == "active"
    uid = (await tasks.get(api, namespace, name))["metadata"]["uid"]
    for run in status.recentRuns:
        assert run.startedAt is not None
        assert run.startedAt >= run.scheduledAt + schedule.jitter(uid, run.scheduledAt, 1), "the jitter is waited"
    assert [(c.type, c.status) for c in status.conditions] == [("Ready", "True"), ("Finished", "True")]
    await tasks.events_posted(api, namespace, name, "Finished")
    shown = (await http.get(f"{TASKS}/{task_id}", headers=tenant.headers)).json()
    assert (shown["status"], shown["jitterSeconds"], shown["maxRuns"], shown["remainingRuns"]) == ("active", 1, 2, 0)
    assert shown["nextRunAt"] is None and shown["lastSuccessfulAt"]
    after = await http.get(f"{TASKS}/{task_id}/upcoming", headers=tenant.headers)
    assert after.json() == {"id": task_id, "runs": []}


async def test_upcoming_runs_keep_to_the_window_and_refuse_a_bad_count(http: httpx.AsyncClient, tenant: Tenant) -> None:
    start = datetime.datetime.now(UTC).replace(microsecond=0) + datetime.timedelta(days=1)
    window = {
        "startAt": models.format_timestamp(start),
        "endAt": models.format_timestamp(start + datetime.timedelta(hours=3)),
    }
    answer = await http.post(TASKS, headers=tenant.headers, json={**TASK, "schedule": "@hourly", **window})
    assert answer.status_code == 201, answer.text
    assert {key: answer.json()[key] for key in window} == window
    task_id = answer.json()["id"]
    listed = (await http.get(f"{TASKS}/{task_id}/upcoming", headers=tenant.headers)).json()["runs"]
    expected = [cron.next_tick("0 * * * *", "UTC", start + datetime.timedelta(hours=hour)) for hour in range(3)]
    assert [datetime.datetime.fromisoformat(run) for run in listed] == [
        t for t in expected if t <= start + datetime.timedelta(hours=3)
    ]
    for count in (0, 101, "many"):
        refused = await http.get(f"{TASKS}/{task_id}/upcoming", headers=tenant.headers, params={"count": count})
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["query", "count"], refused.text


async def test_resuming_a_paused_task_fires_nothing_extra(
    api: client.ApiClient, namespace: str, http: httpx.AsyncClient, tenant: Tenant
) -> None:
    answer = await http.post(TASKS, headers=tenant.headers, json={**TASK, "schedule": EVERY_2S})
    task_id = answer.json()["id"]
    name = ids.object_name(task_id)
    assert name is not None

    async def ran() -> models.StanTaskStatus | None:
        status = await tasks.status(api, namespace, name)
        return status if tasks.finished(status.recentRuns) else None

    await eventually(ran, timeout=15)
    assert (await http.post(f"{TASKS}/{task_id}/pause", headers=tenant.headers)).status_code == 200
    paused_at = datetime.datetime.now(UTC)
    await asyncio.sleep(4)
    assert (await http.post(f"{TASKS}/{task_id}/resume", headers=tenant.headers)).status_code == 200
    resumed_at = datetime.datetime.now(UTC)
    await asyncio.sleep(5)
    runs = (await tasks.status(api, namespace, name)).recentRuns
    ticks = [run.scheduledAt for run in runs]
    assert len(ticks) == len(set(ticks)), "no tick ran twice"
    in_pause = [
        t for t in ticks if paused_at + datetime.timedelta(seconds=1) < t < resumed_at - datetime.timedelta(seconds=1)
    ]
    assert in_pause == [], "the paused window is not backfilled"
