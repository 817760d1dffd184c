"""Helpers for tests that drive StanHeartbeats through the API server."""

from __future__ import annotations

import uuid

from kubernetes_asyncio import client

from stan_core import kube, models


def _objects(api: client.ApiClient) -> kube.Objects:
    return kube.Objects(api, models.STAN_HEARTBEAT)


async def create(api: client.ApiClient, namespace: str, **spec: object) -> dict:
    body = {
        "apiVersion": models.API_VERSION,
        "kind": "StanHeartbeat",
        "metadata": {"name": models.HEARTBEAT_NAME},
        "spec": spec,
    }
    return await _objects(api).create(namespace, body)


async def status(api: client.ApiClient, namespace: str) -> models.StanHeartbeatStatus:
    body = await _objects(api).get(namespace, models.HEARTBEAT_NAME)
    return models.StanHeartbeatStatus.model_validate(body.get("status") or {})


async def patch(api: client.ApiClient, namespace: str, body: dict) -> dict:
    return await _objects(api).patch(namespace, models.HEARTBEAT_NAME, body)


async def request_run(api: client.ApiClient, namespace: str) -> str:
    request = uuid.uuid4().hex
    await patch(api, namespace, {"metadata": {"annotations": {models.RUN_REQUEST_ANNOTATION: request}}})
    return request


def by_check(result: models.StanHeartbeatStatus) -> dict[str, models.CheckResult]:
    return {item.check: item for item in result.results}
