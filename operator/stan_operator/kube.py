"""One way to reach the Kubernetes API from asyncio code: kubernetes_asyncio,
configured from ``KUBECONFIG`` (or ``~/.kube/config``) outside a cluster and
from the service account inside one."""
from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from stan_operator import models

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


async def api_client() -> client.ApiClient:
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        config.load_incluster_config()
        return client.ApiClient()
    configuration = client.Configuration()
    # Read KUBECONFIG now: kubernetes_asyncio's default is fixed when it is imported.
    await config.load_kube_config(config_file=os.environ.get("KUBECONFIG", "~/.kube/config"),
                                  client_configuration=configuration)
    return client.ApiClient(configuration)


def custom_objects(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


async def list_raw(call: Callable[..., Awaitable[Any]], **arguments: Any) -> dict:
    """A list call's JSON as plain dicts (no model objects: cheaper, and the same shape a watch delivers)."""
    response = await call(**arguments, _preload_content=False)
    body = await response.json()
    if response.status != 200:
        raise ApiException(status=response.status, reason=body.get("message", response.reason))
    return body


async def patch_status(api: client.ApiClient, resource: models.Resource, namespace: str, name: str,
                       patch: dict | list) -> dict:
    """A merge patch (dict) or a JSON patch (list) of the status subresource."""
    return await custom_objects(api).patch_namespaced_custom_object_status(
        models.GROUP, models.VERSION, namespace, resource.plural, name, patch,
        _content_type=JSON_PATCH if isinstance(patch, list) else MERGE_PATCH)
