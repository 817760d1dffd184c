"""StanTask against the real API server with the operator running: timing, runs, pause, validation."""

from __future__ import annotations

import datetime
import itertools

import pytest
from kubernetes_asyncio import client

from stan_core import cron, models

from . import tasks
from .conftest import eventually, kubectl, kubectl_apply_refused

UTC = datetime.UTC
EVERY_2S = "*/2 * * * * *"


async def test_next_run_is_the_next_cron_tick_in_the_tasks_zone(api: client.ApiClient, namespace: str) -> None:
    created = await tasks.create(api, namespace, "daily", schedule="0 9 * * *", timeZone="Europe/Berlin")
    status = await eventually(lambda: _with_next_run(api, namespace, "daily"))
    created_at = datetime.datetime.fromisoformat(created["metadata"]["creationTimestamp"])
    assert status.nextRunAt == cron.next_tick("0 9 * * *", "Europe/Berlin", created_at)
    assert status.status == "active"
    ready = status.conditions[0]
    assert (ready.type, ready.status, ready.reason, ready.observedGeneration) == ("Ready", "True", "Scheduled", 1)

    table = kubectl("get", "stantasks", "-n", namespace, "daily").stdout.splitlines()
    assert table[0].split() == ["NAME", "SCHEDULE", "ACTION", "MODEL", "STATUS", "LAST", "RUN", "NEXT", "RUN", "AGE"]
    row = table[1].split()
    assert row[:9] == ["daily", "0", "9", "*", "*", "*", "audit_workflows", "model_abc123", "active"]
    assert row[9] == models.format_timestamp(status.nextRunAt), "Last Run is empty; Next Run is a timestamp"
    assert kubectl("get", "st", "-n", namespace, "-o", "name").stdout.strip() == "stantask.stan.dev/daily"


async def _with_next_run(api: client.ApiClient, namespace: str, name: str) -> models.StanTaskStatus | None:
    status = await tasks.status(api, namespace, name)
    return status if status.nextRunAt else None


async def test_a_task_fires_every_tick_exactly_once(api: client.ApiClient, namespace: str) -> None:
    await tasks.create(api, namespace, "often", schedule=EVERY_2S)
    status = await eventually(lambda: _runs_at_least(api, namespace, "often", 4), timeout=30)
    runs = tasks.finished(status.recentRuns)
    ticks = sorted(run.scheduledAt for run in runs)
    assert len(ticks) == len(set(ticks)), "no tick ran twice"
    assert all(later - earlier == datetime.timedelta(seconds=2) for earlier, later in itertools.pairwise(ticks)), (
        f"no tick was lost: {ticks}"
    )
    for run in runs:
        assert run.result == models.RunResult.SUCCEEDED
        assert run.startedAt is not None and run.startedAt >= run.scheduledAt
        assert run.finishedAt is not None and run.finishedAt >= run.startedAt
        assert "tasks audited" in run.message or "All workflows healthy" in run.message
    assert status.lastRunAt is not None and status.lastRunAt >= max(ticks)
    assert status.nextRunAt is not None and status.nextRunAt > status.lastScheduledAt
    await tasks.events_posted(api, namespace, "often", "Succeeded")


async def _runs_at_least(api: client.ApiClient, namespace: str, name: str, count: int) -> models.StanTaskStatus | None:
    status = await tasks.status(api, namespace, name)
    return status if len(tasks.finished(status.recentRuns)) >= count else None


@pytest.mark.slow
async def test_a_task_fires_on_a_real_minute_tick(api: client.ApiClient, namespace: str) -> None:
    await tasks.create(api, namespace, "minutely", schedule="* * * * *")
    status = await eventually(lambda: _runs_at_least(api, namespace, "minutely", 1), timeout=80, interval=1)
    run = tasks.finished(status.recentRuns)[0]
    assert run.scheduledAt.second == 0 and run.scheduledAt.microsecond == 0
    assert run.result == models.RunResult.SUCCEEDED
    assert status.nextRunAt == run.scheduledAt + datetime.timedelta(minutes=1)


async def test_pause_stops_firing_and_resume_does_not_backfill(api: client.ApiClient, namespace: str) -> None:
    await tasks.create(api, namespace, "pausable", schedule=EVERY_2S)
    await tasks.create(api, namespace, "witness", schedule=EVERY_2S)
    await eventually(lambda: _runs_at_least(api, namespace, "pausable", 1))
    await tasks.patch_spec(api, namespace, "pausable", paused=True)
    paused = await eventually(lambda: _in_state(api, namespace, "pausable", "paused"))
    assert paused.nextRunAt is None
    paused_at = datetime.datetime.now(UTC)
    # The paused task's ticks come and go unseen; a task on the same schedule shows when two of them have.
    await eventually(lambda: _ran_since(api, namespace, "witness", paused_at, 2))
    during = await tasks.status(api, namespace, "pausable")
    assert during.lastScheduledAt == paused.lastScheduledAt, "a paused task does not fire"
    wide = kubectl("get", "stantasks", "-n", namespace, "pausable", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-1] == "RESULT" and during.latestRun is not None
    assert wide[1].split()[-1] == during.latestRun.result, "the Result column shows the latest run's result"

    await tasks.patch_spec(api, namespace, "pausable", paused=False)
    resumed = await eventually(lambda: _in_state(api, namespace, "pausable", "active"))
    resumed_at = datetime.datetime.now(UTC)
    assert resumed.nextRunAt is not None and resumed.nextRunAt > paused_at
    later = await eventually(
        lambda: _runs_at_least(api, namespace, "pausable", len(tasks.finished(resumed.recentRuns)) + 2)
    )
    in_pause = [
        run.scheduledAt
        for run in later.recentRuns
        if paused_at + datetime.timedelta(seconds=1) < run.scheduledAt < resumed_at - datetime.timedelta(seconds=1)
    ]
    assert in_pause == [], "the paused window is not backfilled"
    await tasks.events_posted(api, namespace, "pausable", "Paused", "Resumed")


async def _ran_since(
    api: client.ApiClient, namespace: str, name: str, since: datetime.datetime, count: int
) -> list[models.Run] | None:
    """The task's finished runs of ticks after ``since``, once there are ``count`` of them."""
    runs = [
        run for run in tasks.finished((await tasks.status(api, namespace, name)).recentRuns) if run.scheduledAt > since
    ]
    return runs if len(runs) >= count else None


async def _in_state(api: client.ApiClient, namespace: str, name: str, state: str) -> models.StanTaskStatus | None:
    status = await tasks.status(api, namespace, name)
    return status if status.status == state else None


async def test_a_schedule_change_recomputes_next_run_at_once(api: client.ApiClient, namespace: str) -> None:
    await tasks.create(api, namespace, "moving", schedule="0 9 * * *")
    await eventually(lambda: _with_next_run(api, namespace, "moving"))
    changed = await tasks.patch_spec(api, namespace, "moving", schedule="30 10 * * *", timeZone="Asia/Tokyo")
    generation = changed["metadata"]["generation"]

    async def recomputed() -> models.StanTaskStatus | None:
        status = await tasks.status(api, namespace, "moving")
        return status if status.observedGeneration == generation else None

    status = await eventually(recomputed, timeout=10)
    assert status.nextRunAt == cron.next_tick("30 10 * * *", "Asia/Tokyo", datetime.datetime.now(UTC))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"schedule": "61 * * * *"}, "schedule: invalid cron expression '61 * * * *'"),
        ({"schedule": "0 0 30 2 *"}, "schedule: cron expression '0 0 30 2 *' never fires"),
        (
            {"action": "launch_rockets"},
            "action: unknown action 'launch_rockets'; available: audit_workflows, render_report",
        ),
        ({"timeZone": "Mars/Olympus"}, "timeZone: unknown time zone 'Mars/Olympus'"),
        ({"name": "   "}, "name: must not be blank"),
    ],
)
async def test_kubectl_apply_of_an_invalid_task_is_refused(namespace: str, tmp_path, spec: dict, message: str) -> None:
    fields = {"name": "Nightly", "action": "audit_workflows", "schedule": "0 9 * * *", "modelId": "m", **spec}
    refusal = kubectl_apply_refused(
        tmp_path,
        f"apiVersion: {models.API_VERSION}\nkind: StanTask\n"
        f"metadata: {{name: invalid, namespace: {namespace}}}\nspec:\n"
        + "".join(f"  {key}: {value!r}\n" for key, value in fields.items()),
    )
    assert 'admission webhook "stantask.stan.dev" denied the request: invalid StanTask: ' in refusal
    assert message in refusal


async def test_an_empty_name_is_refused_by_the_schema(namespace: str, tmp_path) -> None:
    refusal = kubectl_apply_refused(
        tmp_path,
        f"apiVersion: {models.API_VERSION}\nkind: StanTask\n"
        f"metadata: {{name: unnamed, namespace: {namespace}}}\n"
        "spec: {name: '', action: audit_workflows, schedule: '0 9 * * *', "
        "modelId: m}\n",
    )
    assert 'spec.name: Invalid value: "": spec.name in body should be at least 1 chars long' in refusal
