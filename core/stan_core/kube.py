"""One way to reach the Kubernetes API from asyncio code: kubernetes_asyncio,
configured from ``KUBECONFIG`` (or ``~/.kube/config``) outside a cluster and
from the service account inside one."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
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
Body = dict[str, Any]
"""An object, or any answer of the API server, as plain JSON."""


async def api_client() -> client.ApiClient:
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        config.load_incluster_config()  # type: ignore[no-untyped-call]
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


async def raw(call: Callable[..., Awaitable[Any]], **arguments: Any) -> Body:
    """A call's JSON as plain dicts: no model objects, which are costly to build and parse, and the
    same shape a watch delivers."""
    response = await call(**arguments, _preload_content=False)
    if response.status >= 300:
        # A Status object as a rule; plain text from an API server still setting up a resource.
        text = await response.text()
        try:
            reason = json.loads(text).get("message", response.reason)
        except ValueError:
            reason = text.strip() or response.reason
        error = ApiException(status=response.status, reason=reason)
        error.body = text.encode()
        raise error
    body: Body = await response.json()
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


async def unless_missing(call: Awaitable[Result]) -> Result | None:
    """The call's answer, or None when its object does not exist (404)."""
    try:
        return await call
    except ApiException as error:
        if error.status == 404:
            return None
        raise


async def unless_conflict(call: Awaitable[Result]) -> Result | None:
    """A write's answer, or None when the API server refuses it as a conflict (409): the object of a
    create exists already, or the object of an update changed since it was read."""
    try:
        return await call
    except ApiException as error:
        if error.status == 409:
            return None
        raise


@dataclasses.dataclass(frozen=True)
class Objects:
    """The objects of one Stan resource, with its group, version and plural said once.

    Every call answers plain JSON dicts (see ``raw``): the shape a watch delivers, and cheaper than
    kubernetes_asyncio's model objects."""

    api: client.ApiClient
    resource: models.Resource

    def _path(self, namespace: str | None = None) -> dict[str, str]:
        """The arguments that name the resource (and the namespace) in every call."""
        path = {"group": models.GROUP, "version": models.VERSION, "plural": self.resource.plural}
        return path if namespace is None else {**path, "namespace": namespace}

    @property
    def _calls(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def listing(self, namespace: str | None = None) -> tuple[Callable[..., Awaitable[Any]], dict[str, str]]:
        """The list call and its arguments, in one namespace or all: what a list and a watch both take."""
        if namespace is None:
            return self._calls.list_cluster_custom_object, self._path()
        return self._calls.list_namespaced_custom_object, self._path(namespace)

    async def list_objects(self, namespace: str | None = None, **options: Any) -> Body:
        call, arguments = self.listing(namespace)
        return await raw(call, **arguments, **options)

    async def get(self, namespace: str, name: str) -> Body:
        return await raw(self._calls.get_namespaced_custom_object, **self._path(namespace), name=name)

    async def create(self, namespace: str, body: Body) -> Body:
        return await raw(self._calls.create_namespaced_custom_object, **self._path(namespace), body=body)

    async def patch(self, namespace: str, name: str, patch: Body) -> Body:
        """A merge patch of the object (its spec, metadata)."""
        return await raw(
            self._calls.patch_namespaced_custom_object,
            **self._path(namespace),
            name=name,
            body=patch,
            _content_type=MERGE_PATCH,
        )

    async def delete(self, namespace: str, name: str) -> Body:
        return await raw(self._calls.delete_namespaced_custom_object, **self._path(namespace), name=name)

    async def replace_status(
        self, namespace: str, name: str, version: str, status: Body, *, give_up_after: float = GIVE_UP_SECONDS
    ) -> Body:
        """Replace the status subresource while the object is at ``version`` (409 when it is not),
        riding out outages. Only name and version go with it: the server keeps the rest of the object."""
        body = {
            "apiVersion": models.API_VERSION,
            "kind": self.resource.kind,
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": version},
            "status": status,
        }
        return await with_retries(
            lambda: raw(
                self._calls.replace_namespaced_custom_object_status, **self._path(namespace), name=name, body=body
            ),
            give_up_after=give_up_after,
        )

    async def patch_status(
        self, namespace: str, name: str, patch: Body, *, give_up_after: float = GIVE_UP_SECONDS
    ) -> Body:
        """A merge patch of the status subresource, riding out outages."""
        return await with_retries(
            lambda: raw(
                self._calls.patch_namespaced_custom_object_status,
                **self._path(namespace),
                name=name,
                body=patch,
                _content_type=MERGE_PATCH,
            ),
            give_up_after=give_up_after,
        )
