"""Kubernetes Events on Stan's objects: what happened, for ``kubectl describe``."""
from __future__ import annotations

import asyncio
import datetime
import logging
import uuid

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from stan_operator import models

COMPONENT = "stan-operator"
log = logging.getLogger(__name__)


async def post(api: client.ApiClient, resource: models.Resource, metadata: dict, reason: str, message: str,
               *, warning: bool = False) -> None:
    """Post an Event; a failure to post is logged, never raised, since Events are best-effort."""
    now = datetime.datetime.now(datetime.timezone.utc)
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(name=f"{metadata['name']}.{uuid.uuid4().hex[:16]}",
                                     namespace=metadata["namespace"]),
        involved_object=client.V1ObjectReference(api_version=models.API_VERSION, kind=resource.kind,
                                                 name=metadata["name"], namespace=metadata["namespace"],
                                                 uid=metadata.get("uid")),
        reason=reason, message=message[:1024], type="Warning" if warning else "Normal",
        first_timestamp=now, last_timestamp=now, count=1,
        source=client.V1EventSource(component=COMPONENT), reporting_component=COMPONENT,
    )
    try:
        await client.CoreV1Api(api).create_namespaced_event(metadata["namespace"], event)
    except (ApiException, aiohttp.ClientError, OSError, asyncio.TimeoutError) as error:
        log.warning("could not post event %s on %s/%s: %s", reason, metadata["namespace"], metadata["name"],
                    getattr(error, "reason", None) or error)
