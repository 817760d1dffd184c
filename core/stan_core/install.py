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
    names = []
    manifests = [crdgen.crd(resource) for resource in models.RESOURCES]
    for manifest in manifests:
        name = manifest["metadata"]["name"]
        try:
            current = await extensions.read_custom_resource_definition(name)
        except ApiException as error:
            if error.status != 404:
                raise
            await extensions.create_custom_resource_definition(manifest)
        else:
            manifest["metadata"]["resourceVersion"] = current.metadata.resource_version
            await extensions.replace_custom_resource_definition(name, manifest)
        names.append(name)
    await asyncio.wait_for(
        asyncio.gather(
            *(_established(extensions, name) for name in names), *(_served(api, manifest) for manifest in manifests)
        ),
        ESTABLISH_TIMEOUT,
    )
    return names


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


async def _served(api: client.ApiClient, manifest: dict) -> None:
    """Until the resource lists: right after Established the API server may still answer 429 "storage is
    (re)initializing", and a watch that meets that backs off for seconds."""
    spec = manifest["spec"]
    while True:
        try:
            await kube.custom_objects(api).list_cluster_custom_object(
                spec["group"], spec["versions"][0]["name"], spec["names"]["plural"], limit=1
            )
            return
        except ApiException as error:
            if error.status not in (404, 429, 503):
                raise
        await asyncio.sleep(0.1)
