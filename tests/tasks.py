"""Helpers for tests that drive StanTasks through the API server."""

from __future__ import annotations

from kubernetes_asyncio import client

from stan_core import kube, models

from .conftest import eventually


def _objects(api: client.ApiClient) -> kube.Objects:
    return kube.Objects(api, models.STAN_TASK)


async def create(api: client.ApiClient, namespace: str, name: str, **spec: object) -> dict:
    body = {
        "apiVersion": models.API_VERSION,
        "kind": "StanTask",
        "metadata": {"name": name},
        "spec": {"name": f"Task {name}", "action": "audit_workflows", "modelId": "model_abc123", **spec},
    }
    return await _objects(api).create(namespace, body)


async def get(api: client.ApiClient, namespace: str, name: str) -> dict:
    return await _objects(api).get(namespace, name)


async def status(api: client.ApiClient, namespace: str, name: str) -> models.StanTaskStatus:
    return models.StanTaskStatus.model_validate((await get(api, namespace, name)).get("status") or {})


async def patch_spec(api: client.ApiClient, namespace: str, name: str, **spec: object) -> dict:
    return await _objects(api).patch(namespace, name, {"spec": spec})


async def delete(api: client.ApiClient, namespace: str, name: str) -> None:
    await _objects(api).delete(namespace, name)


async def event_reasons(api: client.ApiClient, namespace: str, name: str) -> list[str]:
    listing = await client.CoreV1Api(api).list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
    return [event.reason for event in listing.items]


async def events_posted(api: client.ApiClient, namespace: str, name: str, *reasons: str) -> list[str]:
    """The object's event reasons once all of ``reasons`` are among them: the operator posts an
    Event after the status write that a test sees first."""

    async def posted() -> list[str] | None:
        found = await event_reasons(api, namespace, name)
        return found if set(reasons) <= set(found) else None

    return await eventually(posted, timeout=15)


def finished(runs: list[models.Run]) -> list[models.Run]:
    return [run for run in runs if run.result != models.RunResult.RUNNING.value]
