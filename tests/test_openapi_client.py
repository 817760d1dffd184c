"""A client generated from the facade's /openapi.json drives every operation, timestamps as instants.

openapi-python-client writes a typed client from the document alone, as a user of the API would;
each operation then runs against the real facade. An operation the document describes wrongly
fails here: a field of the wrong type, a status the document does not list, a missing format.
"""

from __future__ import annotations

import datetime
import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from .conftest import FacadeProcess, Tenant

PACKAGE = "stan_generated_client"


@pytest.fixture(scope="module")
def generated(facade: FacadeProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    root = tmp_path_factory.mktemp("client")
    document = root / "openapi.json"
    document.write_text(httpx.get(f"{facade.url}/openapi.json", timeout=10).text)
    tools = Path(sys.executable).parent  # the generator formats its output with this virtualenv's ruff
    command = [str(tools / "openapi-python-client"), "generate", "--path", str(document), "--meta", "none"]
    subprocess.run(
        [*command, "--output-path", str(root / PACKAGE)],
        env={**os.environ, "PATH": f"{tools}:{os.environ['PATH']}"},
        check=True,
        capture_output=True,
    )
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(root))


def operation(tag: str, name: str) -> Any:
    """The generated module of one operation, by its tag and FastAPI's operation id."""
    return importlib.import_module(f"{PACKAGE}.api.{tag}.{name}")


async def test_a_generated_client_drives_every_operation(
    generated: ModuleType, facade: FacadeProcess, tenant: Tenant
) -> None:
    models = importlib.import_module(f"{PACKAGE}.models")
    async with generated.AuthenticatedClient(
        base_url=facade.url, token=tenant.key, prefix="", auth_header_name="X-API-Key"
    ) as client:
        driven = await drive_every_operation(client, models)

    operations = {
        path.stem for path in Path(generated.__file__).parent.glob("api/*/*.py") if path.name != "__init__.py"
    }
    assert driven == operations, f"not driven: {operations - driven}"


async def drive_every_operation(client: Any, models: ModuleType) -> set[str]:
    """Call each operation once, in an order that makes each meaningful; the names of those called."""
    done: set[str] = set()

    async def call(tag: str, name: str, *args: Any, **kwargs: Any) -> Any:
        answer = await operation(tag, name).asyncio_detailed(*args, client=client, **kwargs)
        assert 200 <= answer.status_code < 300, (name, answer.status_code, answer.content)
        done.add(name)
        return answer.parsed

    actions = await call("tasks", "list_actions_api_v1_stan_actions_get")
    assert "audit_workflows" in [action.name for action in actions]
    body = models.TaskCreate(name="Generated", action="audit_workflows", schedule="0 9 * * *", model_id="model_abc")
    created = await call("tasks", "create_task_api_v1_stan_tasks_post", body=body)
    assert isinstance(created.created_at, datetime.datetime) and isinstance(created.next_run_at, datetime.datetime)
    assert created.id in [task.id for task in await call("tasks", "list_tasks_api_v1_stan_tasks_get")]
    fetched = await call("tasks", "get_task_api_v1_stan_tasks_id_get", created.id)
    assert fetched.created_at == created.created_at
    renamed = models.TaskUpdate(name="Generated again")
    assert (await call("tasks", "update_task_api_v1_stan_tasks_id_put", created.id, body=renamed)).updated
    note = models.PauseRequest(note="paused by a generated client")
    assert (await call("tasks", "pause_task_api_v1_stan_tasks_id_pause_post", created.id, body=note)).paused
    paused = await call("tasks", "get_task_api_v1_stan_tasks_id_get", created.id)
    assert paused.pause_note == "paused by a generated client" and isinstance(paused.paused_at, datetime.datetime)
    assert (await call("tasks", "resume_task_api_v1_stan_tasks_id_resume_post", created.id)).resumed
    triggered = await call("tasks", "run_task_api_v1_stan_tasks_id_run_post", created.id)
    runs = await call("tasks", "task_runs_api_v1_stan_tasks_id_runs_get", created.id)
    assert triggered.run_id in [run.run_id for run in runs]
    assert all(isinstance(run.scheduled_at, datetime.datetime) for run in runs)
    past = models.BackfillRequest(from_=created.created_at - datetime.timedelta(days=3), to=created.created_at)
    backfilled = await call("tasks", "backfill_task_api_v1_stan_tasks_id_backfill_post", created.id, body=past)
    assert backfilled.ticks == 3 and isinstance(backfilled.to, datetime.datetime)
    upcoming = await call("tasks", "upcoming_runs_api_v1_stan_tasks_id_upcoming_get", created.id, count=3)
    assert len(upcoming.runs) == 3 and all(isinstance(moment, datetime.datetime) for moment in upcoming.runs)

    heartbeat = await call("heartbeat", "get_heartbeat_api_v1_stan_heartbeat_get")
    update = models.HeartbeatUpdate(interval_minutes=heartbeat.interval_minutes)
    await call("heartbeat", "update_heartbeat_api_v1_stan_heartbeat_put", body=update)
    ran = await call("heartbeat", "run_heartbeat_api_v1_stan_heartbeat_run_post")
    assert isinstance(ran.healthy, bool)
    history = await call("heartbeat", "heartbeat_runs_api_v1_stan_heartbeat_runs_get")
    assert all(isinstance(run.started_at, datetime.datetime) for run in history)

    await call("overview", "tasks_api_v1_stan_overview_tasks_get")
    await call("overview", "heartbeat_api_v1_stan_overview_heartbeat_get")
    await call("overview", "upcoming_api_v1_stan_overview_upcoming_get")
    await call("tasks", "delete_task_api_v1_stan_tasks_id_delete", created.id)
    return done
