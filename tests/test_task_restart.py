"""Across an operator crash a tick runs once within startingDeadlineSeconds, is skipped past it, never twice."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Iterator

import pytest
from kubernetes_asyncio import client

from stan_core import models

from . import tasks
from .conftest import OPERATOR_CONFIG, OperatorProcess, eventually

UTC = datetime.UTC
EVERY_10S = "*/10 * * * * *"


@pytest.fixture
def own_operator(private_namespace: str) -> Iterator[list[OperatorProcess]]:
    """Operators the test starts for its private namespace; all are stopped at the end."""
    started: list[OperatorProcess] = []
    yield started
    for process in started:
        if process.process.poll() is None:
            process.stop()


def start(started: list[OperatorProcess], namespace: str, config: dict | None = None) -> OperatorProcess:
    process = OperatorProcess(f"{namespace}-{len(started)}", "--namespace", namespace, config=config)
    started.append(process)
    return process


async def _first_finished_run(api: client.ApiClient, namespace: str, name: str) -> models.StanTaskStatus | None:
    status = await tasks.status(api, namespace, name)
    return status if tasks.finished(status.recentRuns) else None


async def _kill_after_a_run(api: client.ApiClient, namespace: str, operator: OperatorProcess) -> datetime.datetime:
    """Kill the operator right after a run; return the tick it will miss."""
    status = await eventually(lambda: _first_finished_run(api, namespace, "survivor"), timeout=30)
    operator.kill()
    assert status.nextRunAt is not None
    return status.nextRunAt


async def _sleep_until(moment: datetime.datetime) -> None:
    await asyncio.sleep(max(0.0, (moment - datetime.datetime.now(UTC)).total_seconds()))


async def test_a_tick_missed_across_a_crash_runs_once_after_restart(
    api: client.ApiClient, private_namespace: str, own_operator: list[OperatorProcess]
) -> None:
    await tasks.create(api, private_namespace, "survivor", schedule=EVERY_10S, startingDeadlineSeconds=60)
    missed = await _kill_after_a_run(api, private_namespace, start(own_operator, private_namespace))
    await _sleep_until(missed + datetime.timedelta(seconds=3))
    start(own_operator, private_namespace)

    async def ran(tick: datetime.datetime) -> models.Run | None:
        status = await tasks.status(api, private_namespace, "survivor")
        return next((r for r in tasks.finished(status.recentRuns) if r.scheduledAt == tick), None)

    run = await eventually(lambda: ran(missed), timeout=30)
    assert run.result == models.RunResult.SUCCEEDED
    assert run.startedAt is not None and run.startedAt >= missed + datetime.timedelta(seconds=3), (
        "it ran after the restart, late"
    )
    await eventually(lambda: ran(missed + datetime.timedelta(seconds=10)), timeout=30)
    ticks = [r.scheduledAt for r in (await tasks.status(api, private_namespace, "survivor")).recentRuns]
    assert len(ticks) == len(set(ticks)), f"no tick ran twice: {ticks}"


async def test_a_tick_missed_past_its_deadline_is_recorded_as_skipped(
    api: client.ApiClient, private_namespace: str, own_operator: list[OperatorProcess]
) -> None:
    await tasks.create(api, private_namespace, "survivor", schedule=EVERY_10S, startingDeadlineSeconds=2)
    missed = await _kill_after_a_run(api, private_namespace, start(own_operator, private_namespace))
    await _sleep_until(missed + datetime.timedelta(seconds=5))
    restarted_at = datetime.datetime.now(UTC)
    start(own_operator, private_namespace)

    async def skipped() -> models.Run | None:
        status = await tasks.status(api, private_namespace, "survivor")
        return next((r for r in status.recentRuns if r.result == models.RunResult.SKIPPED), None)

    record = await eventually(skipped, timeout=30)
    assert record.scheduledAt == missed
    assert "more than startingDeadlineSeconds (2)" in record.message
    status = await tasks.status(api, private_namespace, "survivor")
    assert status.nextRunAt is not None and status.nextRunAt > restarted_at, "it goes on from now"
    ticks = [r.scheduledAt for r in status.recentRuns]
    assert len(ticks) == len(set(ticks))
    await tasks.events_posted(api, private_namespace, "survivor", "Skipped")


async def test_an_object_that_got_past_the_webhook_is_marked_not_ready(
    api: client.ApiClient, private_namespace: str, own_operator: list[OperatorProcess]
) -> None:
    """The session's webhook allows seconds in schedules; an operator configured without them refuses
    the object it finds, with a condition rather than a crash."""
    await tasks.create(api, private_namespace, "admitted", schedule=EVERY_10S)
    start(own_operator, private_namespace, config={**OPERATOR_CONFIG, "allowSecondSchedules": False})

    async def not_ready() -> models.Condition | None:
        status = await tasks.status(api, private_namespace, "admitted")
        return next((c for c in status.conditions if c.type == "Ready" and c.status == "False"), None)

    condition = await eventually(not_ready, timeout=30)
    assert condition.reason == "InvalidSpec"
    assert condition.message.startswith("schedule: invalid cron expression '*/10 * * * * *': expected 5 fields")
    status = await tasks.status(api, private_namespace, "admitted")
    assert status.nextRunAt is None and status.recentRuns == []
    await tasks.events_posted(api, private_namespace, "admitted", "InvalidSpec")
