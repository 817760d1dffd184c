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
    if await kube.unless_conflict(core.create_namespace(body)) is not None:
        return
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
    namespace = client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
    await kube.unless_conflict(client.CoreV1Api(api).create_namespace(namespace))


async def _ensure_heartbeat(api: client.ApiClient, namespace: str, spec: models.StanHeartbeatSpec) -> None:
    body = {
        "apiVersion": models.API_VERSION,
        "kind": models.STAN_HEARTBEAT.kind,
        "metadata": {"name": models.HEARTBEAT_NAME},
        "spec": spec.model_dump(mode="json"),
    }
    await kube.unless_conflict(kube.Objects(api, models.STAN_HEARTBEAT).create(namespace, body))


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
    created = await kube.Objects(api, models.STAN_API_KEY).create(config.own_namespace(), keys.manifest(key_id, spec))
    stored = keys.parse(created)
    assert stored is not None
    return key, stored.principal


async def list_keys(api: client.ApiClient) -> list[keys.Principal]:
    listing = await kube.Objects(api, models.STAN_API_KEY).list_objects(config.own_namespace())
    found = [keys.parse(item) for item in listing["items"]]
    return sorted((stored.principal for stored in found if stored), key=lambda p: p.created_at)


async def revoke(api: client.ApiClient, key_id: str) -> bool:
    """False when no such key exists."""
    deleted = kube.Objects(api, models.STAN_API_KEY).delete(config.own_namespace(), key_id)
    return await kube.unless_missing(deleted) is not None


async def record_use(api: client.ApiClient, key_id: str, at: datetime.datetime) -> None:
    """Write a key's last use; a key revoked meanwhile has nothing to record."""
    used = {"status": {"lastUsedAt": models.format_timestamp(at)}}
    await kube.unless_missing(
        kube.Objects(api, models.STAN_API_KEY).patch_status(config.own_namespace(), key_id, used, give_up_after=30)
    )
