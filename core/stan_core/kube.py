"""One way to reach the Kubernetes API from asyncio code: kubernetes_asyncio,
configured from ``KUBECONFIG`` (or ``~/.kube/config``) outside a cluster and
from the service account inside one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import aiohttp.helpers
import yarl
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from stan_core import models

MERGE_PATCH = "application/merge-patch+json"
TRANSIENT_STATUSES = {429, 500, 502, 503, 504}
GIVE_UP_SECONDS = 600.0
Result = TypeVar("Result")
log = logging.getLogger(__name__)
JSON_PATCH = "application/json-patch+json"


async def api_client() -> client.ApiClient:
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        config.load_incluster_config()
        return _without_environment_lookups(client.ApiClient())
    configuration = client.Configuration()
    # Read KUBECONFIG now: kubernetes_asyncio's default is fixed when it is imported.
    await config.load_kube_config(
        config_file=os.environ.get("KUBECONFIG", "~/.kube/config"), client_configuration=configuration
    )
    return _without_environment_lookups(client.ApiClient(configuration))


def _without_environment_lookups(api: client.ApiClient) -> client.ApiClient:
    """Look up the environment's proxy for the API server once, not on every request.

    kubernetes_asyncio's session trusts the environment, and aiohttp then reads
    ``~/.netrc`` and the proxy variables on a worker thread for every request,
    the largest share of the operator's CPU when thousands of runs shared a tick. The
    proxy (``HTTPS_PROXY``, ``NO_PROXY``) is still honoured, decided here once.
    """
    rest = api.rest_client
    if rest.proxy is None:
        with contextlib.suppress(LookupError):
            proxy, auth = aiohttp.helpers.get_env_proxy_for_url(yarl.URL(api.configuration.host))
            rest.proxy = str(proxy.with_user(auth.login).with_password(auth.password) if auth else proxy)
    rest.pool_manager._trust_env = False  # no public setter; tests/test_kube.py notices if this stops working
    return api


def custom_objects(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


async def raw(call: Callable[..., Awaitable[Any]], **arguments: Any) -> dict:
    """A call's JSON as plain dicts: no model objects, which are costly to build and parse, and the
    same shape a watch delivers."""
    response = await call(**arguments, _preload_content=False)
    body = await response.json()
    if response.status >= 300:
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


async def patch_status(
    api: client.ApiClient,
    resource: models.Resource,
    namespace: str,
    name: str,
    patch: dict | list,
    *,
    give_up_after: float = GIVE_UP_SECONDS,
) -> dict:
    """A merge patch (dict) or a JSON patch (list) of the status subresource, riding out outages."""
    return await with_retries(
        lambda: custom_objects(api).patch_namespaced_custom_object_status(
            models.GROUP,
            models.VERSION,
            namespace,
            resource.plural,
            name,
            patch,
            _content_type=JSON_PATCH if isinstance(patch, list) else MERGE_PATCH,
        ),
        give_up_after=give_up_after,
    )
