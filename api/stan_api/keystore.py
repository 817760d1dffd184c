"""API keys in the cluster: issuing (with the tenant's namespace and heartbeat), listing, revoking.

Issuing a key onboards its tenant: the namespace is created if missing, with
a StanHeartbeat holding the configured defaults, so that the heartbeat runs
from the start.
"""
from __future__ import annotations

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from stan_api import keys
from stan_operator import config, kube, models


async def _ensure_namespace(api: client.ApiClient, name: str) -> None:
    try:
        await client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    except ApiException as error:
        if error.status != 409:
            raise


async def _ensure_heartbeat(api: client.ApiClient, namespace: str, spec: models.StanHeartbeatSpec) -> None:
    body = {"apiVersion": models.API_VERSION, "kind": models.STAN_HEARTBEAT.kind,
            "metadata": {"name": models.HEARTBEAT_NAME}, "spec": spec.model_dump(mode="json")}
    try:
        await kube.custom_objects(api).create_namespaced_custom_object(
            models.GROUP, models.VERSION, namespace, models.STAN_HEARTBEAT.plural, body)
    except ApiException as error:
        if error.status != 409:
            raise


async def issue(api: client.ApiClient, user: str, scopes: list[str],
                namespace: str | None) -> tuple[str, keys.Principal]:
    """A new key for ``user``; the key itself is returned once and never stored."""
    tenant = namespace or keys.tenant_namespace(user)
    home = config.own_namespace()
    await _ensure_namespace(api, home)
    await _ensure_namespace(api, tenant)
    await _ensure_heartbeat(api, tenant, config.load().heartbeatDefaults)
    key, key_id, digest = keys.new_key()
    manifest = keys.secret_manifest(key_id, digest, user, tenant, scopes)
    await client.CoreV1Api(api).create_namespaced_secret(home, manifest)
    return key, keys.Principal(key_id=key_id, user=user, namespace=tenant, scopes=frozenset(scopes),
                               created_at=manifest["stringData"]["createdAt"])


async def list_keys(api: client.ApiClient) -> list[keys.Principal]:
    listing = await kube.raw(client.CoreV1Api(api).list_namespaced_secret, namespace=config.own_namespace(),
                                  label_selector=f"{keys.LABEL}=true")
    found = [keys.parse_secret(item) for item in listing["items"]]
    return sorted((stored.principal for stored in found if stored), key=lambda p: p.created_at)


async def revoke(api: client.ApiClient, key_id: str) -> bool:
    """False when no such key exists."""
    try:
        await client.CoreV1Api(api).delete_namespaced_secret(keys.SECRET_PREFIX + key_id, config.own_namespace())
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True
