"""What the task scheduler and the heartbeat loop share about the objects they watch.

Both keep a view of their objects from the watch and write their status
through; both run on request, when someone sets the ``stan.dev/run-request``
annotation to a new id; and both stand by while another replica holds the
Lease, keeping their view current but writing nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Generic

from stan_core import models
from stan_core.index import Key
from stan_operator import supervision
from stan_operator.effects import EventRecorder, ObjectRef, Patch, StatusT, StatusWriter, Stored

BEAT_SECONDS = 30.0
"""A loop waiting to lead still shows this often that it is alive."""


@dataclasses.dataclass(kw_only=True)
class Watched(Generic[StatusT]):
    """One watched object: who it is, and the status this replica last wrote or saw."""

    namespace: str
    name: str
    uid: str
    generation: int
    status: StatusT
    version: str | None = None
    """The object's resourceVersion when this replica last wrote or read ``status``, or None; a version
    older than the stored object's only costs a write that answers 409 and a read."""
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    """Held while the object's status is being decided and written, so that writes do not interleave."""
    requested: str | None = None
    """The run request already taken up, so that watch events repeating it start no second run."""

    @property
    def stored(self) -> Stored[StatusT]:
        """This replica's view of the object's status, as the base of a compare-and-swap."""
        return Stored(self.status, self.version)

    def adopt(self, stored: Stored[StatusT]) -> None:
        """Take a written status as this replica's view, with the version that holds it."""
        self.status = stored.status
        if stored.version is not None:
            self.version = stored.version

    @property
    def key(self) -> Key:
        return self.namespace, self.name

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(self.namespace, self.name, self.uid)


class Keeper(Generic[StatusT]):
    """Status written through for one kind of watched object, by the replica that leads."""

    def __init__(
        self,
        store: StatusWriter[StatusT],
        events: EventRecorder,
        leading: asyncio.Event | None,
        forget: Callable[[Watched[StatusT]], None],
    ) -> None:
        """``leading``, when given, is set while this replica holds the Lease; ``forget`` drops an
        object that turned out to be gone."""
        self._store = store
        self._events = events
        self._leading = leading
        self._forget = forget

    @property
    def standby(self) -> bool:
        """A replica that does not hold the Lease keeps its view current but writes nothing."""
        return self._leading is not None and not self._leading.is_set()

    async def until_leading(self, beat: supervision.Beat) -> None:
        while self.standby:
            assert self._leading is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._leading.wait(), BEAT_SECONDS)
            beat()

    def new_request(self, watched: Watched[StatusT], metadata: Mapping[str, Any], answered: str | None) -> str | None:
        """The run request that the annotation makes and nobody has taken up yet, now taken up.

        ``answered`` is the request that status records as answered."""
        request = (metadata.get("annotations") or {}).get(models.RUN_REQUEST_ANNOTATION)
        if not request or request in (answered, watched.requested) or self.standby:
            return None
        watched.requested = request
        return str(request)

    async def write(self, watched: Watched[StatusT], patch: Patch) -> None:
        """Write status and adopt what the server stored; forget the object when it is gone."""
        if self.standby:
            return
        stored = await self._store.write(watched.namespace, watched.name, watched.status, patch)
        if stored is None:
            self._forget(watched)
        else:
            watched.adopt(stored)

    async def announce(self, watched: Watched[StatusT], reason: str, message: str, *, warning: bool = False) -> None:
        """An Event about a change that every replica sees in the watch, posted by the leader alone."""
        if not self.standby:
            await self._events.post(watched.ref, reason, message, warning=warning)
