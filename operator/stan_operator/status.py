"""Writing status the way every Stan resource does: merge patches that skip no-ops,
and a Ready condition whose lastTransitionTime moves only when its status does."""

from __future__ import annotations

import datetime
from typing import TypeVar

from kubernetes_asyncio import client

from stan_core import kube, models
from stan_operator.effects import Stored

StatusModel = TypeVar("StatusModel", bound=models.Model)


def ready(
    conditions: list[models.Condition], is_ready: bool, reason: str, message: str, generation: int
) -> list[kube.Body]:
    return [condition(conditions, "Ready", is_ready, reason, message, generation)]


def condition(
    conditions: list[models.Condition], kind: str, is_true: bool, reason: str, message: str, generation: int
) -> kube.Body:
    """The condition ``kind`` as it now stands, keeping its lastTransitionTime unless its status changes."""
    status = "True" if is_true else "False"
    previous = next((c for c in conditions if c.type == kind), None)
    since = (
        previous.lastTransitionTime
        if previous is not None and previous.status == status
        else datetime.datetime.now(datetime.UTC)
    )
    return models.Condition(
        type=kind,
        status=status,
        reason=reason,
        message=message,
        lastTransitionTime=since,
        observedGeneration=generation,
    ).model_dump(mode="json", by_alias=True)


async def write(
    api: client.ApiClient, resource: models.Resource, namespace: str, name: str, current: StatusModel, patch: kube.Body
) -> Stored[StatusModel] | None:
    """Merge-patch status; return what the server stored (``current`` when nothing changed,
    None when the object is gone). A patch that changes nothing is not sent: an operator
    restart with thousands of objects must not rewrite every status."""
    dumped = current.model_dump(mode="json", by_alias=True)
    if all(dumped.get(field) == value for field, value in patch.items()):
        return Stored(current, None)
    stored = await kube.unless_missing(kube.Objects(api, resource).patch_status(namespace, name, {"status": patch}))
    if stored is None:
        return None
    return Stored(type(current).model_validate(stored.get("status") or {}), stored["metadata"]["resourceVersion"])
