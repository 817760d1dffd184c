"""``/api/v1/stan/overview``: read-only views for dashboards (Stan additions), behind the same door as the rest."""

from __future__ import annotations

import datetime

from fastapi import APIRouter, Query

from stan_api import overview
from stan_api.auth import Tenant
from stan_api.facade import State

router = APIRouter(prefix="/api/v1/stan/overview", tags=["overview"])


@router.get(
    "/tasks",
    response_model=list[overview.TaskOverview],
    summary="All tasks in full, with recent runs and the schedule in words (Stan addition)",
)
async def tasks(facade: State, tenant: Tenant) -> list[overview.TaskOverview]:
    return overview.tasks(facade, tenant.namespace)


@router.get(
    "/upcoming",
    response_model=overview.Upcoming,
    summary="The active tasks' runs in the coming hours, soonest first (Stan addition)",
)
async def upcoming(
    facade: State, tenant: Tenant, hours: int = Query(default=24, ge=1, le=168, description="How far ahead to look.")
) -> overview.Upcoming:
    now = datetime.datetime.now(datetime.UTC)
    return await overview.upcoming(facade, tenant.namespace, hours, now)


@router.get(
    "/heartbeat",
    response_model=overview.HeartbeatStatus,
    summary="The latest heartbeat run: when, healthy or not, each check's result (Stan addition)",
)
async def heartbeat(facade: State, tenant: Tenant) -> overview.HeartbeatStatus:
    return overview.heartbeat_status(facade, tenant.namespace)
