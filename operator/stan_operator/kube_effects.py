"""The side effects' interfaces (``effects``) implemented against the API server.

The one module of the scheduler and the heartbeat loop that calls the API
server, so that a change of client helpers is made here alone; and the one
that sends notifications over HTTP.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import Generic

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from stan_core import kube, models
from stan_operator import events, status
from stan_operator.actions import jobs
from stan_operator.effects import (
    ClaimLost,
    HeartbeatEffects,
    ObjectRef,
    Patch,
    StatusT,
    Stored,
    TaskEffects,
    Undeliverable,
    Unreachable,
    holds,
)

LOST_CLAIM_STATUSES = (404, 422)
"""The object gone, or a status the server would not store."""
SEND_TIMEOUT_SECONDS = 10.0
"""How long one notification attempt may take, connection included."""


class StatusStore(Generic[StatusT]):
    def __init__(self, api: client.ApiClient, resource: models.Resource) -> None:
        self._api = api
        self._resource = resource

    async def write(self, namespace: str, name: str, current: StatusT, patch: Patch) -> Stored[StatusT] | None:
        return await status.write(self._api, self._resource, namespace, name, current, patch)


class TaskStatusStore(StatusStore[models.StanTaskStatus]):
    def __init__(self, api: client.ApiClient) -> None:
        super().__init__(api, models.STAN_TASK)
        self._objects = kube.Objects(api, models.STAN_TASK)

    async def claim(
        self,
        namespace: str,
        name: str,
        *,
        current: Stored[models.StanTaskStatus],
        expected: Patch,
        fields: Patch,
        give_up_after: float,
    ) -> Stored[models.StanTaskStatus]:
        """A compare-and-swap on the object's resourceVersion: the whole status, replaced while the object
        is at the version of this replica's view. The API server stores a replacement as sent, where a
        JSON patch with a test would first be applied to the stored object.
        Another write since (a user's edit, another replica) answers 409; then, or when no version is
        known, the object is read afresh and the claim tried on it, unless it no longer holds what
        ``expected`` says."""
        deadline = time.monotonic() + give_up_after
        while True:
            if current.version is not None:
                # What the claim replaces is not dumped only to be overwritten, unless ``expected`` looks in it.
                looked_in = {path.split("/")[0] for path in expected}
                dumped = current.status.model_dump(
                    mode="json", by_alias=True, exclude_none=True, exclude=fields.keys() - looked_in
                )
                if not holds(dumped, expected):
                    raise ClaimLost("status moved on")
                # Absent is null to the models, and every stored byte is decoded and encoded on each write.
                replaced = {field: value for field, value in (dumped | fields).items() if value is not None}
                patience = max(0.0, deadline - time.monotonic())
                with _transient_as_unreachable():
                    try:
                        stored = await self._objects.replace_status(
                            namespace, name, current.version, replaced, give_up_after=patience
                        )
                    except ApiException as error:
                        if error.status in LOST_CLAIM_STATUSES:
                            raise ClaimLost(str(error.reason)) from error
                        if error.status != 409:
                            raise
                        if time.monotonic() > deadline:
                            raise Unreachable("the object changed before every try until the deadline") from error
                    else:
                        version = stored["metadata"]["resourceVersion"]
                        return Stored(models.StanTaskStatus.model_validate(replaced), version)
            body = await self.read(namespace, name)
            if body is None:
                raise ClaimLost("NotFound")
            current = Stored(
                models.StanTaskStatus.model_validate(body.get("status") or {}), body["metadata"]["resourceVersion"]
            )

    async def read(self, namespace: str, name: str) -> kube.Body | None:
        with _transient_as_unreachable():
            return await kube.unless_missing(self._objects.get(namespace, name))

    async def pause(self, namespace: str, name: str, note: str) -> kube.Body | None:
        with _transient_as_unreachable():
            return await kube.unless_missing(
                self._objects.patch(namespace, name, {"spec": {"paused": True, "pauseNote": note}})
            )


@contextlib.contextmanager
def _transient_as_unreachable() -> Iterator[None]:
    """An error that waiting would cure, raised as Unreachable: the caller has waited as long as it would."""
    try:
        yield
    except Exception as error:
        if kube.transient(error):
            raise Unreachable(str(error)) from error
        raise


class EventRecorder:
    def __init__(self, api: client.ApiClient, resource: models.Resource) -> None:
        self._api = api
        self._resource = resource

    async def post(self, involved: ObjectRef, reason: str, message: str, *, warning: bool = False) -> None:
        metadata = {"namespace": involved.namespace, "name": involved.name, "uid": involved.uid}
        await events.post(self._api, self._resource, metadata, reason, message, warning=warning)


class JobControl:
    def __init__(self, api: client.ApiClient) -> None:
        self._api = api

    async def stop(self, namespace: str, job: str) -> None:
        await jobs.stop(self._api, namespace, job)

    async def prune(self, namespace: str, task_uid: str, keep: int) -> None:
        await jobs.prune(self._api, namespace, task_uid, keep)


class Outbox:
    """Notifications over HTTP, with Secrets read by the operator's own credentials."""

    def __init__(self, api: client.ApiClient) -> None:
        self._api = api
        self._session: aiohttp.ClientSession | None = None

    async def secret(self, namespace: str, ref: models.SecretKeyRef) -> str:
        try:
            secret = await kube.raw(
                client.CoreV1Api(self._api).read_namespaced_secret, name=ref.name, namespace=namespace
            )
        except ApiException as error:
            raise Undeliverable(f"Secret {ref.name} could not be read: {error.status} {error.reason}") from error
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise Undeliverable(f"Secret {ref.name} could not be read: {type(error).__name__}") from error
        value = (secret.get("data") or {}).get(ref.key)
        if value is None:
            raise Undeliverable(f"Secret {ref.name} has no key {ref.key}")
        try:
            return base64.b64decode(value, validate=True).decode().strip()
        except (binascii.Error, UnicodeDecodeError) as error:
            raise Undeliverable(f"Secret {ref.name} key {ref.key} is not UTF-8 text") from error

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT_SECONDS))
        try:
            async with self._session.post(url, data=body, headers=dict(headers), allow_redirects=False) as answer:
                await answer.read()
                return answer.status
        except TimeoutError as error:
            raise Undeliverable(f"no answer within {SEND_TIMEOUT_SECONDS:g}s") from error
        except (aiohttp.ClientError, OSError) as error:
            raise Undeliverable(f"not reached: {type(error).__name__}") from error

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def for_tasks(api: client.ApiClient, outbox: Outbox) -> TaskEffects:
    return TaskEffects(TaskStatusStore(api), EventRecorder(api, models.STAN_TASK), JobControl(api), outbox)


def for_heartbeats(api: client.ApiClient, outbox: Outbox) -> HeartbeatEffects:
    return HeartbeatEffects(StatusStore(api, models.STAN_HEARTBEAT), EventRecorder(api, models.STAN_HEARTBEAT), outbox)
