"""``/api/v1/stan/heartbeat``."""

from __future__ import annotations

from fastapi import APIRouter

from stan_api import heartbeat, schemas
from stan_api.auth import Tenant
from stan_api.facade import State

router = APIRouter(prefix="/api/v1/stan/heartbeat", tags=["heartbeat"])


@router.get(
    "", response_model=schemas.Heartbeat, response_model_exclude_unset=True, summary="Get the heartbeat configuration"
)
async def get_heartbeat(facade: State, tenant: Tenant) -> schemas.Heartbeat:
    return heartbeat.get_heartbeat(facade, tenant.namespace)


@router.put(
    "",
    response_model=schemas.Heartbeat,
    response_model_exclude_unset=True,
    summary="Update the heartbeat configuration",
)
async def update_heartbeat(facade: State, tenant: Tenant, body: schemas.HeartbeatUpdate) -> schemas.Heartbeat:
    return await heartbeat.update_heartbeat(facade, tenant.namespace, body)


@router.get(
    "/runs",
    response_model=list[schemas.HeartbeatRecord],
    summary="Recent heartbeat runs, newest first (Stan addition)",
)
async def heartbeat_runs(facade: State, tenant: Tenant) -> list[schemas.HeartbeatRecord]:
    return heartbeat.recent_runs(facade, tenant.namespace)


@router.post(
    "/run",
    response_model=schemas.HeartbeatRun,
    responses={504: {"model": schemas.Error, "description": "The operator did not answer in time"}},
    summary="Run the heartbeat checks now",
)
async def run_heartbeat(facade: State, tenant: Tenant) -> schemas.HeartbeatRun:
    return await heartbeat.run_heartbeat(facade, tenant.namespace)
