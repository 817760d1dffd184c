"""What scheduling does to the world, behind small interfaces.

As the CronJob controller reaches the API server only through its jobControl
and cronJobControl interfaces, the scheduler and the heartbeat loop reach it
only through these: the status store, the event recorder, the Job control and
the outbox of notifications.
``kube_effects`` implements them against the API server; tests implement them
in memory, and so drive every scheduling rule without one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Generic, Protocol, TypeVar

from stan_core import models
from stan_core.kube import Body

StatusT = TypeVar("StatusT", bound=models.Model)
Patch = dict[str, Any]
"""Status fields and the JSON values to store in them."""


@dataclasses.dataclass(frozen=True)
class ObjectRef:
    """The object that an Event is about."""

    namespace: str
    name: str
    uid: str


class ClaimLost(Exception):
    """A compare-and-swap that found status other than expected, or the object gone."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unreachable(Exception):
    """The API server stayed unreachable for as long as the caller was willing to wait."""


class Undeliverable(Exception):
    """A notification's destination, or a Secret it needs, could not be reached; trying again may help.
    The message never holds the destination, which may have come from a Secret."""


@dataclasses.dataclass(frozen=True)
class Stored(Generic[StatusT]):
    """A status as the server stores it, and the object's resourceVersion that holds it."""

    status: StatusT
    version: str | None
    """None when nothing was written: the version known before still holds."""


def holds(status: Patch, expected: Patch) -> bool:
    """Whether ``status`` (as JSON) has each value of ``expected``, a claim's paths such as ``backfill/handled``."""
    for path, value in expected.items():
        found: Any = status
        for part in path.split("/"):
            found = found.get(part) if isinstance(found, dict) else None
        if found != value:
            return False
    return True


class StatusWriter(Protocol[StatusT]):
    async def write(self, namespace: str, name: str, current: StatusT, patch: Patch) -> Stored[StatusT] | None:
        """Merge ``patch`` into status; what the server stored (``current`` when the patch changes
        nothing, so nothing is sent), or None when the object is gone."""
        ...


class TaskStatusStore(StatusWriter[models.StanTaskStatus], Protocol):
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
        """Store ``fields`` only while status holds what ``expected`` says (paths under status, such as
        ``lastScheduledAt`` or ``backfill/handled``, and their values), and return the stored status.
        ``current`` is this replica's view, the base of the write while the object is still at its version.
        Raises ClaimLost when it does not (or the object is gone), Unreachable when the API server did not
        answer, or the object changed before every try, within ``give_up_after`` seconds."""
        ...

    async def read(self, namespace: str, name: str) -> Body | None:
        """The object as stored now, or None when it is gone."""
        ...

    async def pause(self, namespace: str, name: str, note: str) -> Body | None:
        """Pause the task in its spec, with ``note`` (as ``kubectl`` or the facade would); the object as
        stored, or None when it is gone."""
        ...


class EventRecorder(Protocol):
    async def post(self, involved: ObjectRef, reason: str, message: str, *, warning: bool = False) -> None:
        """Record an Event; best-effort, so it never raises."""
        ...


class JobControl(Protocol):
    async def stop(self, namespace: str, job: str) -> None:
        """Delete a running Job; one already gone is no error."""
        ...

    async def prune(self, namespace: str, task_uid: str, keep: int) -> None:
        """Delete the task's oldest Jobs beyond ``keep``."""
        ...


class Outbox(Protocol):
    async def secret(self, namespace: str, ref: models.SecretKeyRef) -> str:
        """The value of a Secret's key in ``namespace``; raises Undeliverable when it cannot be read."""
        ...

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        """POST ``body`` and return the HTTP status; raises Undeliverable when no answer came."""
        ...


@dataclasses.dataclass(frozen=True)
class TaskEffects:
    status: TaskStatusStore
    events: EventRecorder
    jobs: JobControl
    outbox: Outbox | None = None
    """Where notifications go; None sends none (the scheduling rules' tests in memory)."""


@dataclasses.dataclass(frozen=True)
class HeartbeatEffects:
    status: StatusWriter[models.StanHeartbeatStatus]
    events: EventRecorder
    outbox: Outbox | None = None
