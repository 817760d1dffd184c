"""One way to reach the Kubernetes API from asyncio code: kubernetes_asyncio,
configured from ``KUBECONFIG`` (or ``~/.kube/config``) outside a cluster and
from the service account inside one."""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from stan_operator import models

MERGE_PATCH = "application/merge-patch+json"
TRANSIENT_STATUSES = {429, 500, 502, 503, 504}
GIVE_UP_SECONDS = 600.0
Result = TypeVar("Result")
log = logging.getLogger(__name__)
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


def transient(error: BaseException) -> bool:
    """An error that waiting cures: the API server unreachable, overloaded or restarting."""
    if isinstance(error, ApiException):
        return error.status in TRANSIENT_STATUSES
    return isinstance(error, (aiohttp.ClientError, OSError, asyncio.TimeoutError))


async def with_retries(call: Callable[[], Awaitable[Result]], *, give_up_after: float = GIVE_UP_SECONDS) -> Result:
    """``call()``, again after a growing pause while the failure is transient, for ``give_up_after`` seconds."""
    deadline = time.monotonic() + give_up_after
    pause = 0.2
    while True:
        try:
            return await call()
        except Exception as error:
            if not transient(error) or time.monotonic() + pause > deadline:
                raise
            log.warning("API server call failed (%s: %s); retrying in %.1fs", type(error).__name__, error, pause)
        await asyncio.sleep(pause)
        pause = min(pause * 2, 5.0)


async def patch_status(api: client.ApiClient, resource: models.Resource, namespace: str, name: str,
                       patch: dict | list, *, give_up_after: float = GIVE_UP_SECONDS) -> dict:
    """A merge patch (dict) or a JSON patch (list) of the status subresource, riding out outages."""
    return await with_retries(lambda: custom_objects(api).patch_namespaced_custom_object_status(
        models.GROUP, models.VERSION, namespace, resource.plural, name, patch,
        _content_type=JSON_PATCH if isinstance(patch, list) else MERGE_PATCH), give_up_after=give_up_after)
