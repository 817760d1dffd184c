"""Schedules beyond CronJob's five fields, against the real API server, operator and facade: shorthands,
jitter, a window and maxRuns, the upcoming runs, and no extra firing on resume."""

from __future__ import annotations

import asyncio
import datetime
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from stan_core import backfill, cron, ids, models, schedule

from . import heartbeats, tasks
from .conftest import OPERATOR_CONFIG, OperatorProcess, Tenant, eventually

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


# Pause with a note, pauseAfterFailures, BufferOne, backfill, run now during a run, a PUT's null, the CLI.

FAILING = "explodes"
"""A check of the tests' plugin that raises: a run_heartbeat run with it fails at once."""
HANGING = "hangs"
"""A check that never ends: a run_heartbeat run with it lasts checkTimeoutSeconds, then fails."""
YEARLY = "0 0 1 1 *"
SECOND = datetime.timedelta(seconds=1)
WAITING = "waiting for the run going on to end (concurrencyPolicy: BufferOne)"
ALREADY_WAITING = "a run is going and another already waits for it to end (concurrencyPolicy: BufferOne)"


async def _created(http: httpx.AsyncClient, tenant: Tenant, **fields: object) -> tuple[str, str]:
    """A task made through the facade: its REST id and its object name."""
    answer = await http.post(TASKS, headers=tenant.headers, json={**TASK, **fields})
    assert answer.status_code == 201, answer.text
    task_id = answer.json()["id"]
    name = ids.object_name(task_id)
    assert name is not None
    return task_id, name


async def _messages(api: client.ApiClient, namespace: str, name: str, reason: str) -> list[str]:
    listing = await client.CoreV1Api(api).list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
    return [event.message for event in listing.items if event.reason == reason]


async def _shown(http: httpx.AsyncClient, tenant: Tenant, task_id: str) -> dict:
    answer = await http.get(f"{TASKS}/{task_id}", headers=tenant.headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def _checks(api: client.ApiClient, namespace: str, checks: list[str]) -> None:
    """The namespace's heartbeat, which run_heartbeat runs, with ``checks`` and not running on its own; the
    operator may have made the default one already."""
    try:
        await heartbeats.create(api, namespace, enabled=False, checks=checks)
    except ApiException as error:
        if error.status != 409:
            raise
        await heartbeats.patch(api, namespace, {"spec": {"enabled": False, "checks": checks}})


def _loc(answer: httpx.Response) -> list[str]:
    assert answer.status_code == 422, answer.text
    return answer.json()["detail"][0]["loc"]


async def test_a_pause_note_is_kept_shown_and_announced_and_resuming_clears_it(
    api: client.ApiClient, namespace: str, http: httpx.AsyncClient, tenant: Tenant
) -> None:
    task_id, name = await _created(http, tenant, schedule="@daily")
    before = datetime.datetime.now(UTC).replace(microsecond=0)
    paused = await http.post(f"{TASKS}/{task_id}/pause", headers=tenant.headers, json={"note": "db migration"})
    assert (paused.status_code, paused.json()) == (200, {"paused": True})

    async def noted() -> dict | None:
        shown = await _shown(http, tenant, task_id)
        return shown if "pausedAt" in shown else None

    shown = await eventually(noted, timeout=15)
    assert (shown["status"], shown["pauseNote"], shown["nextRunAt"]) == ("paused", "db migration", None)
    paused_at = datetime.datetime.fromisoformat(shown["pausedAt"])
    assert before <= paused_at <= datetime.datetime.now(UTC)
    body = await tasks.get(api, namespace, name)
    assert (body["spec"]["paused"], body["spec"]["pauseNote"]) == (True, "db migration")
    status = models.StanTaskStatus.model_validate(body["status"])
    assert (status.status, status.pauseNote, status.pausedAt) == ("paused", "db migration", paused_at)
    await tasks.events_posted(api, namespace, name, "Paused")
    assert any("db migration" in message for message in await _messages(api, namespace, name, "Paused"))

    resumed = await http.post(f"{TASKS}/{task_id}/resume", headers=tenant.headers)
    assert (resumed.status_code, resumed.json()) == (200, {"resumed": True})

    async def cleared() -> dict | None:
        shown = await _shown(http, tenant, task_id)
        return shown if shown["status"] == "active" else None

    shown = await eventually(cleared, timeout=15)
    assert "pausedAt" not in shown and "pauseNote" not in shown and shown["nextRunAt"]
    body = await tasks.get(api, namespace, name)
    assert body["spec"]["paused"] is False and "pauseNote" not in body["spec"]
    status = models.StanTaskStatus.model_validate(body["status"])
    assert (status.pauseNote, status.pausedAt) == (None, None)

    plain = await http.post(f"{TASKS}/{task_id}/pause", headers=tenant.headers)
    assert (plain.status_code, plain.json()) == (200, {"paused": True}), "the documented call, without a body"
    shown = await eventually(noted, timeout=15)
    assert shown["status"] == "paused" and "pauseNote" not in shown
    too_long = await http.post(f"{TASKS}/{task_id}/pause", headers=tenant.headers, json={"note": "x" * 1025})
    assert _loc(too_long) == ["body", "note"]
    assert "pauseNote" not in (await tasks.get(api, namespace, name))["spec"], "a refused note is not kept"


async def test_pause_after_failures_pauses_with_a_note_and_nothing_runs_after(
    api: client.ApiClient, namespace: str, http: httpx.AsyncClient, tenant: Tenant
) -> None:
    await _checks(api, namespace, [FAILING])
    refused = await http.post(
        TASKS,
        headers=tenant.headers,
        json={**TASK, "schedule": EVERY_2S, "pauseAfterFailures": 4, "runHistoryLimit": 3},
    )
    assert _loc(refused) == ["body", "pauseAfterFailures"]
    assert "runHistoryLimit (3)" in refused.json()["detail"][0]["msg"]
    task_id, name = await _created(
        http, tenant, action="run_heartbeat", schedule=EVERY_2S, pauseAfterFailures=2, runHistoryLimit=5
    )

    async def paused() -> dict | None:
        body = await tasks.get(api, namespace, name)
        return body if body["spec"].get("paused") and (body.get("status") or {}).get("pauseNote") else None

    body = await eventually(paused, timeout=20)
    status = models.StanTaskStatus.model_validate(body["status"])
    note = status.pauseNote
    assert note is not None and note.startswith("paused after 2 failed runs in a row (pauseAfterFailures); the last: ")
    assert FAILING in note, note
    assert body["spec"]["pauseNote"] == note and status.status == "paused" and status.pausedAt is not None
    assert [run.result for run in status.recentRuns] == ["failed", "failed"]
    await tasks.events_posted(api, namespace, name, "Paused")
    assert note in " ".join(await _messages(api, namespace, name, "Paused"))
    shown = await _shown(http, tenant, task_id)
    assert (shown["status"], shown["pauseNote"], shown["pauseAfterFailures"]) == ("paused", note, 2)
    await asyncio.sleep(4.5)  # two ticks of the schedule: none may run while paused
    after = await tasks.status(api, namespace, name)
    assert [run.runId for run in after.recentRuns] == [run.runId for run in status.recentRuns], "nothing ran"


async def _run_now(http: httpx.AsyncClient, tenant: Tenant, task_id: str) -> dict:
    answer = await http.post(f"{TASKS}/{task_id}/run", headers=tenant.headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def _ended(api: client.ApiClient, namespace: str, name: str, *run_ids: str) -> list[models.Run]:
    """The runs ``run_ids``, in that order, once each has ended."""

    async def done() -> list[models.Run] | None:
        runs = {run.runId: run for run in (await tasks.status(api, namespace, name)).recentRuns}
        found = [runs.get(run_id) for run_id in run_ids]
        ended = [run for run in found if run is not None and run.finishedAt is not None]
        return ended if len(ended) == len(run_ids) else None

    return await eventually(done, timeout=20)


async def test_run_now_while_a_run_goes_is_skipped_under_forbid(
    api: client.ApiClient, namespace: str, http: httpx.AsyncClient, tenant: Tenant
) -> None:
    await _checks(api, namespace, [HANGING])
    task_id, name = await _created(http, tenant, action="run_heartbeat", schedule=YEARLY, concurrencyPolicy="Forbid")
    first = await _run_now(http, tenant, task_id)
    assert (first["result"], first["message"]) == ("running", "run on request")
    second = await _run_now(http, tenant, task_id)
    assert (second["result"], second["message"]) == (
        "skipped",
        "the previous run is still active (concurrencyPolicy: Forbid)",
    )
    [ran] = await _ended(api, namespace, name, first["runId"])
    assert ran.result == "failed" and "timed out" in ran.message
    runs = (await tasks.status(api, namespace, name)).recentRuns
    assert [(run.runId, run.result) for run in runs] == [(second["runId"], "skipped"), (first["runId"], "failed")]
    await tasks.events_posted(api, namespace, name, "Failed")
    assert len(await _messages(api, namespace, name, "Failed")) == 1, "one run ran"


async def test_run_now_under_buffer_one_waits_for_the_run_going_and_at_most_one_waits(
    api: client.ApiClient, namespace: str, http: httpx.AsyncClient, tenant: Tenant
) -> None:
    await _checks(api, namespace, [HANGING])
    task_id, name = await _created(http, tenant, action="run_heartbeat", schedule=YEARLY, concurrencyPolicy="BufferOne")
    first = await _run_now(http, tenant, task_id)
    assert (first["result"], first["message"]) == ("running", "run on request")
    second = await _run_now(http, tenant, task_id)
    assert (second["result"], second["message"]) == ("running", WAITING)
    waiting = next(run for run in (await tasks.status(api, namespace, name)).recentRuns if run.runId == second["runId"])
    assert waiting.startedAt is None
    third = await _run_now(http, tenant, task_id)
    assert (third["result"], third["message"]) == ("skipped", ALREADY_WAITING)
    ran, waited = await _ended(api, namespace, name, first["runId"], second["runId"])
    assert ran.finishedAt is not None and waited.startedAt is not None
    assert waited.startedAt >= ran.finishedAt, "the waiting run starts once the one going ends"
    assert waited.result == "failed" and "timed out" in waited.message


@pytest.fixture
def slow_checks_operator(private_namespace: str) -> Iterator[OperatorProcess]:
    """An operator of the test's own namespace whose checks time out after 5s, so that a run lasts 5s."""
    process = OperatorProcess(
        private_namespace, "--namespace", private_namespace, config={**OPERATOR_CONFIG, "checkTimeoutSeconds": 5}
    )
    yield process
    process.stop()


async def test_buffer_one_ticks_wait_for_the_run_going_and_at_most_one_waits(
    api: client.ApiClient, private_namespace: str, slow_checks_operator: OperatorProcess
) -> None:
    await _checks(api, private_namespace, [HANGING])
    await tasks.create(
        api,
        private_namespace,
        "buffered",
        action="run_heartbeat",
        schedule=EVERY_2S,
        concurrencyPolicy="BufferOne",
        runHistoryLimit=20,
    )

    async def runs_where(found: Callable[[list[models.Run]], bool]) -> list[models.Run] | None:
        runs = (await tasks.status(api, private_namespace, "buffered")).recentRuns
        return runs if found(runs) else None

    def waiting(runs: list[models.Run]) -> list[models.Run]:
        return [run for run in runs if run.result == "running" and run.startedAt is None and run.message == WAITING]

    [held] = waiting(await eventually(lambda: runs_where(lambda runs: bool(waiting(runs))), timeout=15))
    runs = await eventually(
        lambda: runs_where(lambda runs: any(run.result == "skipped" for run in runs)), timeout=10, interval=0.1
    )
    skipped = min((run for run in runs if run.result == "skipped"), key=lambda run: run.scheduledAt)
    assert skipped.message == ALREADY_WAITING and skipped.scheduledAt > held.scheduledAt

    def started(runs: list[models.Run]) -> bool:
        return any(run.runId == held.runId and run.startedAt is not None for run in runs)

    runs = await eventually(lambda: runs_where(started), timeout=10)
    [before] = [run for run in runs if run.scheduledAt < held.scheduledAt and run.result != "skipped"]
    [after] = [run for run in runs if run.runId == held.runId]
    assert before.finishedAt is not None and after.startedAt is not None
    assert after.startedAt >= before.finishedAt, "the held run starts once the one going ends"
    assert skipped.scheduledAt < after.startedAt, "the tick skipped came while the held run waited"
    assert before.result == "failed" and "timed out after 5s" in before.message


async def test_backfill_runs_each_missed_tick_once_and_refuses_a_bad_range(
    api: client.ApiClient, namespace: str, http: httpx.AsyncClient, tenant: Tenant
) -> None:
    task_id, name = await _created(http, tenant, schedule=EVERY_2S, runHistoryLimit=100)
    created = datetime.datetime.fromisoformat((await tasks.get(api, namespace, name))["metadata"]["creationTimestamp"])

    async def ran(count: int) -> list[models.Run] | None:
        runs = tasks.finished((await tasks.status(api, namespace, name)).recentRuns)
        return runs if len(runs) >= count else None

    await eventually(lambda: ran(2), timeout=15)
    assert (await http.post(f"{TASKS}/{task_id}/pause", headers=tenant.headers)).status_code == 200
    paused_at = datetime.datetime.now(UTC)
    await asyncio.sleep(6)
    assert (await http.post(f"{TASKS}/{task_id}/resume", headers=tenant.headers)).status_code == 200
    resumed_at = datetime.datetime.now(UTC)

    async def ran_after_resuming() -> bool:
        runs = tasks.finished((await tasks.status(api, namespace, name)).recentRuns)
        return any(run.scheduledAt > resumed_at for run in runs)

    await eventually(ran_after_resuming, timeout=10)
    start = created - datetime.timedelta(seconds=10)
    asked = {"from": models.format_timestamp(start), "to": models.format_timestamp(datetime.datetime.now(UTC))}
    answer = await http.post(f"{TASKS}/{task_id}/backfill", headers=tenant.headers, json=asked)
    assert answer.status_code == 202, answer.text
    taken = answer.json()
    assert taken["from"] == asked["from"] and taken["id"] == task_id
    end = datetime.datetime.fromisoformat(taken["to"])
    assert end <= datetime.datetime.fromisoformat(asked["to"])
    in_range = backfill.ticks_in(EVERY_2S, "UTC", start, end, True, 1000)
    before_creation = [tick for tick in in_range if tick < created]
    in_pause = [tick for tick in in_range if paused_at + SECOND < tick < resumed_at - SECOND]
    assert len(before_creation) >= 4 and len(in_pause) >= 2
    assert taken["ticks"] + taken["alreadyRan"] == len(in_range)
    assert taken["alreadyRan"] >= 3
    assert taken["ticks"] >= len(before_creation) + len(in_pause) and 0 <= taken["handled"] <= taken["ticks"]

    async def done() -> models.StanTaskStatus | None:
        status = await tasks.status(api, namespace, name)
        state = status.backfill
        running = any(run.result == "running" for run in status.recentRuns)
        finished = state is not None and state.finishedAt is not None and not running
        return status if finished else None

    status = await eventually(done, timeout=20)
    assert status.backfill is not None and status.backfill.handled == taken["ticks"]
    scheduled = [run.scheduledAt for run in status.recentRuns if start <= run.scheduledAt <= end]
    assert sorted(scheduled) == in_range, "each tick of the range ran once"
    backfilled = [run for run in status.recentRuns if run.scheduledAt in set(before_creation + in_pause)]
    assert all(run.startedAt is not None and run.startedAt >= resumed_at for run in backfilled)
    assert all(run.result == "succeeded" for run in backfilled)
    await tasks.events_posted(api, namespace, name, "Backfill", "Backfilled")

    again = await http.post(f"{TASKS}/{task_id}/backfill", headers=tenant.headers, json=asked)
    assert again.status_code == 202, again.text
    assert (again.json()["ticks"], again.json()["alreadyRan"]) == (0, len(in_range))

    now = datetime.datetime.now(UTC)
    for refused, field, reason in (
        ({"from": asked["to"], "to": asked["from"]}, "to", "must be after from"),
        ({"from": _at(now - datetime.timedelta(hours=1)), "to": _at(now)}, "to", "more than 1000 ticks"),
        (
            {"from": _at(now + datetime.timedelta(minutes=1)), "to": _at(now + datetime.timedelta(minutes=2))},
            "from",
            "later ticks are still the schedule's to run",
        ),
    ):
        answer = await http.post(f"{TASKS}/{task_id}/backfill", headers=tenant.headers, json=refused)
        assert _loc(answer) == ["body", field] and reason in answer.json()["detail"][0]["msg"], answer.text


def _at(instant: datetime.datetime) -> str:
    return models.format_timestamp(instant)


async def test_a_put_null_resets_a_field_but_not_a_required_one(
    api: client.ApiClient, namespace: str, http: httpx.AsyncClient, tenant: Tenant
) -> None:
    end = _at(datetime.datetime.now(UTC).replace(microsecond=0) + datetime.timedelta(days=30))
    task_id, name = await _created(http, tenant, schedule="@daily", maxRuns=5, endAt=end)
    shown = await _shown(http, tenant, task_id)
    assert (shown["maxRuns"], shown["endAt"]) == (5, end)
    updated = await http.put(f"{TASKS}/{task_id}", headers=tenant.headers, json={"maxRuns": None, "endAt": None})
    assert (updated.status_code, updated.json()) == (200, {"updated": True})
    shown = await _shown(http, tenant, task_id)
    assert "maxRuns" not in shown and "endAt" not in shown and shown["name"] == TASK["name"]
    spec = (await tasks.get(api, namespace, name))["spec"]
    assert "maxRuns" not in spec and "endAt" not in spec and spec["schedule"] == "@daily"
    refused = await http.put(f"{TASKS}/{task_id}", headers=tenant.headers, json={"name": None})
    assert _loc(refused) == ["body", "name"]
    assert (await tasks.get(api, namespace, name))["spec"]["name"] == TASK["name"]


async def test_the_cli_lists_the_upcoming_runs_the_facade_lists(
    namespace: str, http: httpx.AsyncClient, tenant: Tenant, tmp_path: Path
) -> None:
    task_id, _ = await _created(http, tenant, schedule="0 9 * * *", jitterSeconds=600)
    listed = await http.get(f"{TASKS}/{task_id}/upcoming", headers=tenant.headers, params={"count": 3})
    assert listed.status_code == 200, listed.text
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(OPERATOR_CONFIG))
    stan = Path(sys.executable).with_name("stan")
    printed = await asyncio.to_thread(
        subprocess.run,
        [str(stan), "tasks", "upcoming", task_id, "-n", namespace, "--count", "3"],
        capture_output=True,
        text=True,
        env={**os.environ, "STAN_CONFIG": str(config_path)},
    )
    assert printed.returncode == 0, printed.stderr
    runs = listed.json()["runs"]
    assert len(runs) == 3
    assert [datetime.datetime.fromisoformat(line) for line in printed.stdout.split()] == [
        datetime.datetime.fromisoformat(run) for run in runs
    ]
