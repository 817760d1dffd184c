"""Install Stan's CRDs into a cluster and wait until the API server serves them.

The CRDs come from the models, not from files, so an installed wheel applies the same CRDs as a
source tree (whose ``crds/`` a test holds to the models)."""

from __future__ import annotations

import asyncio

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from stan_core import crdgen, kube, models

ESTABLISH_TIMEOUT = 60.0


async def apply_crds(api: client.ApiClient) -> list[str]:
    """Create or replace every CRD of Stan's; return their names once Established and served."""
    extensions = client.ApiextensionsV1Api(api)
    for resource in models.RESOURCES:
        manifest = crdgen.crd(resource)
        current = await kube.unless_missing(extensions.read_custom_resource_definition(resource.crd_name))
        if current is None:
            await kube.raw(extensions.create_custom_resource_definition, body=manifest)
        else:
            manifest["metadata"]["resourceVersion"] = current.metadata.resource_version
            await kube.raw(extensions.replace_custom_resource_definition, name=resource.crd_name, body=manifest)
    await asyncio.wait_for(
        asyncio.gather(
            *(_established(extensions, resource.crd_name) for resource in models.RESOURCES),
            *(_served(kube.Objects(api, resource)) for resource in models.RESOURCES),
        ),
        ESTABLISH_TIMEOUT,
    )
    return [resource.crd_name for resource in models.RESOURCES]


async def apply_crds_to_current_cluster() -> list[str]:
    """``apply_crds`` with the cluster of ``KUBECONFIG`` (or the service account's)."""
    api = await kube.api_client()
    async with api:
        return await apply_crds(api)


async def _established(extensions: client.ApiextensionsV1Api, name: str) -> None:
    while True:
        crd = await extensions.read_custom_resource_definition(name)
        conditions = (crd.status.conditions if crd.status else None) or []
        if any(c.type == "Established" and c.status == "True" for c in conditions):
            return
        await asyncio.sleep(0.1)


async def _served(objects: kube.Objects) -> None:
    """Until the resource lists: right after Established the API server may still answer 429 "storage is
    (re)initializing", and a watch that meets that backs off for seconds."""
    while True:
        try:
            await objects.list_objects(limit=1)
            return
        except ApiException as error:
            if error.status not in (404, 429, 503):
                raise
        await asyncio.sleep(0.1)
