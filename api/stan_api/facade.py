"""The facade's state and its domain errors: one object that routes and domain functions share.

It owns the API client and the watch-backed caches (tasks, heartbeats, API
keys). Domain functions raise the errors below; the app turns them into
HTTP answers, so the functions stay callable without HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import random
from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated

import aiohttp
from fastapi import Depends, Request
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from stan_api import auth, cache, keystore, views
from stan_core import config, kube, models, validation

WRITE_WAIT_SECONDS = 5.0
UPDATE_ATTEMPTS = 25


async def retrying_conflicts(what: str, attempt: Callable[[], Awaitable[dict]]) -> dict:
    """``attempt()`` (read, check, write with the read resourceVersion) until it stores without a
    conflict, pausing a short jittered while between tries; Conflict if it never does."""
    for tries in range(UPDATE_ATTEMPTS):
        await asyncio.sleep(random.uniform(0, 0.01 * min(tries, 10)))
        try:
            return await attempt()
        except ApiException as error:
            if error.status != 409:
                raise
    raise Conflict(f"the {what} kept changing during {UPDATE_ATTEMPTS} attempts to update it; try again")


OPERATOR_ANSWER_SECONDS = 30.0


class NotFound(Exception):
    pass


class Invalid(Exception):
    def __init__(self, errors: list[validation.FieldError]) -> None:
        super().__init__(validation.describe(errors))
        self.errors = errors


class QuotaExceeded(Exception):
    """The tenant holds as many tasks as it may."""


class Conflict(Exception):
    """Others kept changing the object for longer than the retries last."""


class Unavailable(Exception):
    """The cluster cannot be reached, or did not answer in time."""


class TimedOut(Exception):
    """The operator did not answer in time."""


def translate(error: ApiException) -> Exception:
    """What an API server error means for a client of the facade."""
    if error.status == 404:
        return NotFound()
    if error.status in (400, 422):
        return Invalid([validation.FieldError("spec", _message(error))])
    if error.status == 403 and "exceeded quota" in _message(error):
        return QuotaExceeded(_message(error))
    return Unavailable(f"the cluster answered {error.status} {error.reason}")


@contextlib.contextmanager
def talking_to_cluster() -> Iterator[None]:
    """Turn what a call to the API server can raise into the facade's errors."""
    try:
        yield
    except ApiException as error:
        raise translate(error) from None
    except (TimeoutError, aiohttp.ClientError, OSError) as error:
        raise Unavailable(f"the cluster cannot be reached: {type(error).__name__}") from None


def _message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or b"")["message"])
    except (TypeError, ValueError, KeyError):
        return str(error.reason)


@dataclasses.dataclass
class Facade:
    api: client.ApiClient
    configuration: config.OperatorConfig
    tasks: cache.ObjectCache
    heartbeats: cache.ObjectCache
    api_keys: cache.ObjectCache
    keys: auth.KeyIndex
    uses: auth.UseRecorder
    background: list[asyncio.Task[None]] = dataclasses.field(default_factory=list)
    write_wait_seconds: float = WRITE_WAIT_SECONDS
    operator_answer_seconds: float = OPERATOR_ANSWER_SECONDS

    @classmethod
    async def start(cls) -> Facade:
        api = await kube.api_client()
        facade = cls(
            api=api,
            configuration=config.load(),
            tasks=cache.ObjectCache(kube.Objects(api, models.STAN_TASK), render=views.summary_json),
            heartbeats=cache.ObjectCache(kube.Objects(api, models.STAN_HEARTBEAT)),
            api_keys=cache.ObjectCache(kube.Objects(api, models.STAN_API_KEY), namespace=config.own_namespace()),
            keys=auth.KeyIndex(),
            uses=auth.UseRecorder(lambda key_id, at: keystore.record_use(api, key_id, at)),
        )
        facade.api_keys.listen(facade.keys.on_change)
        for watched in (facade.tasks, facade.heartbeats, facade.api_keys):
            facade.background.append(asyncio.create_task(watched.run(), name=f"cache-{watched.name}"))
        return facade

    @property
    def ready(self) -> bool:
        return all(watched.available for watched in (self.tasks, self.heartbeats, self.api_keys))

    def require_cluster(self) -> None:
        if not self.ready:
            raise Unavailable("the cluster cannot be reached right now")

    async def stop(self) -> None:
        self.uses.stop()
        for task in self.background:
            task.cancel()
        await self.api.close()


def current(request: Request) -> Facade:
    return request.app.state.facade


State = Annotated[Facade, Depends(current)]
