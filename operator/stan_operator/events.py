"""Kubernetes Events on Stan's objects: what happened, for ``kubectl describe``."""

from __future__ import annotations

import datetime
import logging
import uuid

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from stan_core import kube, models

COMPONENT = "stan-operator"
log = logging.getLogger(__name__)


async def post(
    api: client.ApiClient,
    resource: models.Resource,
    metadata: dict,
    reason: str,
    message: str,
    *,
    warning: bool = False,
) -> None:
    """Post an Event; a failure to post is logged, never raised, since Events are best-effort."""
    now = models.format_timestamp(datetime.datetime.now(datetime.UTC))
    namespace = metadata["namespace"]
    event = {
        "metadata": {"name": f"{metadata['name']}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
        "involvedObject": {
            "apiVersion": models.API_VERSION,
            "kind": resource.kind,
            "name": metadata["name"],
            "namespace": namespace,
            "uid": metadata.get("uid"),
        },
        "reason": reason,
        "message": message[:1024],
        "type": "Warning" if warning else "Normal",
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
    }
    try:
        await kube.raw(client.CoreV1Api(api).create_namespaced_event, namespace=namespace, body=event)
    except (TimeoutError, ApiException, aiohttp.ClientError, OSError) as error:
        log.warning(
            "could not post event %s on %s/%s: %s",
            reason,
            namespace,
            metadata["name"],
            getattr(error, "reason", None) or error,
        )
