"""Helpers for tests that drive StanHeartbeats through the API server."""

from __future__ import annotations

import uuid

from kubernetes_asyncio import client

from stan_core import kube, models


async def create(api: client.ApiClient, namespace: str, **spec: object) -> dict:
    body = {
        "apiVersion": models.API_VERSION,
        "kind": "StanHeartbeat",
        "metadata": {"name": models.HEARTBEAT_NAME},
        "spec": spec,
    }
    return await kube.custom_objects(api).create_namespaced_custom_object(
        models.GROUP, models.VERSION, namespace, models.STAN_HEARTBEAT.plural, body
    )


async def status(api: client.ApiClient, namespace: str) -> models.StanHeartbeatStatus:
    body = await kube.custom_objects(api).get_namespaced_custom_object(
        models.GROUP, models.VERSION, namespace, models.STAN_HEARTBEAT.plural, models.HEARTBEAT_NAME
    )
    return models.StanHeartbeatStatus.model_validate(body.get("status") or {})


async def patch(api: client.ApiClient, namespace: str, body: dict) -> dict:
    return await kube.custom_objects(api).patch_namespaced_custom_object(
        models.GROUP,
        models.VERSION,
        namespace,
        models.STAN_HEARTBEAT.plural,
        models.HEARTBEAT_NAME,
        body,
        _content_type=kube.MERGE_PATCH,
    )


async def request_run(api: client.ApiClient, namespace: str) -> str:
    request = uuid.uuid4().hex
    await patch(api, namespace, {"metadata": {"annotations": {models.RUN_REQUEST_ANNOTATION: request}}})
    return request


def by_check(result: models.StanHeartbeatStatus) -> dict[str, models.CheckResult]:
    return {item.check: item for item in result.results}
