"""``/api/v1/stan/tasks`` and, beside the contract, ``/api/v1/stan/actions``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response, status

from stan_api import schemas, tasks
from stan_api.auth import Tenant
from stan_api.facade import State
from stan_core import schedule

router = APIRouter(prefix="/api/v1/stan", tags=["tasks"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": schemas.Error, "description": "No such task for this API key's tenant"}
}


@router.get("/tasks", response_model=list[schemas.TaskSummary], summary="List all scheduled tasks")
async def list_tasks(facade: State, tenant: Tenant) -> Response:
    return Response(tasks.list_tasks_json(facade, tenant.namespace), media_type="application/json")


@router.post(
    "/tasks",
    response_model=schemas.Task,
    response_model_exclude_unset=True,
    status_code=status.HTTP_201_CREATED,
    summary="Create a new scheduled task",
)
async def create_task(facade: State, tenant: Tenant, body: schemas.TaskCreate) -> schemas.Task:
    return await tasks.create_task(facade, tenant.namespace, body)


@router.get("/tasks/{id}", response_model=schemas.Task, responses=NOT_FOUND, summary="Get a scheduled task")
async def get_task(facade: State, tenant: Tenant, id: str) -> Response:
    task = tasks.get_task(facade, tenant.namespace, id)
    return Response(task.model_dump_json(exclude_unset=True), media_type="application/json")


@router.put("/tasks/{id}", response_model=schemas.Updated, responses=NOT_FOUND, summary="Update a scheduled task")
async def update_task(facade: State, tenant: Tenant, id: str, body: schemas.TaskUpdate) -> schemas.Updated:
    await tasks.update_task(facade, tenant.namespace, id, body.model_dump(mode="json", exclude_unset=True))
    return schemas.Updated()


@router.delete(
    "/tasks/{id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=NOT_FOUND,
    summary="Delete a scheduled task",
)
async def delete_task(facade: State, tenant: Tenant, id: str) -> Response:
    await tasks.delete_task(facade, tenant.namespace, id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/tasks/{id}/pause", response_model=schemas.Paused, responses=NOT_FOUND, summary="Pause a task")
async def pause_task(
    facade: State, tenant: Tenant, id: str, body: schemas.PauseRequest | None = None
) -> schemas.Paused:
    note = body.note if body is not None else None
    await tasks.update_task(facade, tenant.namespace, id, {"paused": True, "pauseNote": note})
    return schemas.Paused()


@router.post("/tasks/{id}/resume", response_model=schemas.Resumed, responses=NOT_FOUND, summary="Resume a task")
async def resume_task(facade: State, tenant: Tenant, id: str) -> schemas.Resumed:
    await tasks.update_task(facade, tenant.namespace, id, {"paused": False, "pauseNote": None})
    return schemas.Resumed()


@router.get(
    "/tasks/{id}/runs",
    response_model=list[schemas.Run],
    responses=NOT_FOUND,
    summary="Recent runs of a task (Stan addition)",
)
async def task_runs(facade: State, tenant: Tenant, id: str) -> list[schemas.Run]:
    return tasks.recent_runs(facade, tenant.namespace, id)


@router.get(
    "/tasks/{id}/upcoming",
    response_model=schemas.UpcomingRuns,
    responses=NOT_FOUND,
    summary="When a task's next runs are due (Stan addition)",
)
async def upcoming_runs(
    facade: State,
    tenant: Tenant,
    id: str,
    count: int = Query(default=10, ge=1, le=schedule.MAX_UPCOMING, description="How many runs to list."),
) -> schemas.UpcomingRuns:
    return tasks.upcoming_runs(facade, tenant.namespace, id, count)


@router.post(
    "/tasks/{id}/run",
    response_model=schemas.RunTriggered,
    responses={**NOT_FOUND, 504: {"model": schemas.Error, "description": "The operator did not answer"}},
    summary="Run a task now (Stan addition)",
)
async def run_task(facade: State, tenant: Tenant, id: str) -> schemas.RunTriggered:
    return await tasks.run_now(facade, tenant.namespace, id)


@router.post(
    "/tasks/{id}/backfill",
    response_model=schemas.Backfill,
    response_model_by_alias=True,
    status_code=status.HTTP_202_ACCEPTED,
    responses={**NOT_FOUND, 504: {"model": schemas.Error, "description": "The operator did not answer"}},
    summary="Run each past tick of a range that did not run, once (Stan addition)",
)
async def backfill_task(facade: State, tenant: Tenant, id: str, body: schemas.BackfillRequest) -> schemas.Backfill:
    return await tasks.backfill(facade, tenant.namespace, id, body)


@router.get("/actions", response_model=list[schemas.Action], summary="Actions a task may use (Stan addition)")
async def list_actions(facade: State, tenant: Tenant) -> list[schemas.Action]:
    return tasks.actions(facade)
