"""API keys in the cluster: issuing (with the tenant's namespace and heartbeat), listing, revoking.

Issuing a key onboards its tenant: the namespace is created if missing and
marked as the user's, with a StanHeartbeat holding the configured defaults,
so that the heartbeat runs from the start. One user, one tenant: a namespace
marked as another user's is shared only when asked for explicitly, and the
cluster's own namespaces and Stan's are never tenants.
"""

from __future__ import annotations

import datetime

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from stan_api import keys
from stan_core import config, kube, models

OWNER_ANNOTATION = "stan.dev/tenant-user"
"""On a tenant namespace: the user it was issued to first."""


class Refused(ValueError):
    """A key that must not be issued; the message says why."""


def check_tenant(namespace: str) -> None:
    if namespace == "default" or namespace.startswith("kube-") or namespace == config.own_namespace():
        raise Refused(
            f"{namespace!r} cannot be a tenant: the namespaces default, kube-* and Stan's own "
            f"({config.own_namespace()}) are refused"
        )


async def _claim_namespace(api: client.ApiClient, name: str, user: str, shared: bool) -> None:
    """Create the namespace as ``user``'s, or mark an unmarked one so; refuse another user's unless ``shared``."""
    core = client.CoreV1Api(api)
    body = client.V1Namespace(metadata=client.V1ObjectMeta(name=name, annotations={OWNER_ANNOTATION: user}))
    try:
        await core.create_namespace(body)
        return
    except ApiException as error:
        if error.status != 409:
            raise
    current = await kube.raw(core.read_namespace, name=name)
    owner = (current["metadata"].get("annotations") or {}).get(OWNER_ANNOTATION)
    if owner is None:
        await core.patch_namespace(
            name,
            {
                "metadata": {
                    "annotations": {OWNER_ANNOTATION: user},
                    "resourceVersion": current["metadata"]["resourceVersion"],
                }
            },
        )
    elif owner != user and not shared:
        raise Refused(
            f"the namespace {name!r} is the tenant of user {owner!r}; pass --shared to give {user!r} a key to it too"
        )


async def _ensure_namespace(api: client.ApiClient, name: str) -> None:
    try:
        await client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    except ApiException as error:
        if error.status != 409:
            raise


async def _ensure_heartbeat(api: client.ApiClient, namespace: str, spec: models.StanHeartbeatSpec) -> None:
    body = {
        "apiVersion": models.API_VERSION,
        "kind": models.STAN_HEARTBEAT.kind,
        "metadata": {"name": models.HEARTBEAT_NAME},
        "spec": spec.model_dump(mode="json"),
    }
    try:
        await kube.custom_objects(api).create_namespaced_custom_object(
            models.GROUP, models.VERSION, namespace, models.STAN_HEARTBEAT.plural, body
        )
    except ApiException as error:
        if error.status != 409:
            raise


async def issue(
    api: client.ApiClient,
    user: str,
    scopes: list[str],
    namespace: str | None,
    *,
    shared: bool = False,
    expires_in: datetime.timedelta | None = None,
) -> tuple[str, keys.Principal]:
    """A new key for ``user``; the key itself is returned once and never stored."""
    try:
        keys.check_user(user)
        keys.check_scopes(scopes)
    except ValueError as error:
        raise Refused(str(error)) from None
    tenant = namespace or keys.tenant_namespace(user)
    check_tenant(tenant)
    await _ensure_namespace(api, config.own_namespace())
    await _claim_namespace(api, tenant, user, shared)
    await _ensure_heartbeat(api, tenant, config.load().heartbeatDefaults)
    key, key_id, digest = keys.new_key()
    expires_at = None
    if expires_in is not None:
        expires_at = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + expires_in
    spec = models.StanAPIKeySpec(user=user, tenant=tenant, scopes=scopes, sha256=digest, expiresAt=expires_at)
    created = await kube.custom_objects(api).create_namespaced_custom_object(
        models.GROUP, models.VERSION, config.own_namespace(), models.STAN_API_KEY.plural, keys.manifest(key_id, spec)
    )
    stored = keys.parse(created)
    assert stored is not None
    return key, stored.principal


async def list_keys(api: client.ApiClient) -> list[keys.Principal]:
    listing = await kube.raw(
        kube.custom_objects(api).list_namespaced_custom_object,
        group=models.GROUP,
        version=models.VERSION,
        namespace=config.own_namespace(),
        plural=models.STAN_API_KEY.plural,
    )
    found = [keys.parse(item) for item in listing["items"]]
    return sorted((stored.principal for stored in found if stored), key=lambda p: p.created_at)


async def revoke(api: client.ApiClient, key_id: str) -> bool:
    """False when no such key exists."""
    try:
        await kube.custom_objects(api).delete_namespaced_custom_object(
            models.GROUP, models.VERSION, config.own_namespace(), models.STAN_API_KEY.plural, key_id
        )
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


async def record_use(api: client.ApiClient, key_id: str, at: datetime.datetime) -> None:
    """Write a key's last use; a key revoked meanwhile has nothing to record."""
    try:
        await kube.patch_status(
            api,
            models.STAN_API_KEY,
            config.own_namespace(),
            key_id,
            {"status": {"lastUsedAt": models.format_timestamp(at)}},
            give_up_after=30,
        )
    except ApiException as error:
        if error.status != 404:
            raise
