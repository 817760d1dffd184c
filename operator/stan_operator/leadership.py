"""Leader election on a coordination.k8s.io Lease: only the holder fires ticks.

Every replica watches and keeps its timing heap current, so a standby that
takes over fires the next due ticks at once (a hot standby). kopf's peering is
not used for this: it pauses watching, not the scheduler's own loop, and it
pauses every replica when two share a priority. The tick claim in status stays
the last word on exactly-once; the Lease keeps the standby from racing for it.

The rules are client-go's: a leader that cannot renew within the renew
deadline stops leading, before its lease can expire and another replica take
it; another holder's lease counts as expired once it has not changed for a
lease duration by this replica's own clock, since the holder's ``renewTime``
was written by another machine's. Every error is retried: the loop ends only
when the process does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import time
from collections.abc import Callable

from kubernetes_asyncio import client

from stan_core import kube

LEASE_SECONDS = 15
RENEW_DEADLINE_SECONDS = 10
RETRY_SECONDS = 2
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Observed:
    """The lease as last seen, and when, by this replica's monotonic clock."""

    record: tuple[object, ...]
    at: float


class Leadership:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._leases = client.CoordinationV1Api(api)
        self._namespace = namespace
        self._name = name
        self._clock = clock
        self.identity = identity
        self.leading = asyncio.Event()
        self._renewed_at: float | None = None
        self._observed: Observed | None = None

    async def run(self, beat: Callable[[], None]) -> None:
        """Take or renew the lease every few seconds, for as long as the process lives."""
        while True:
            beat()
            try:
                taken = await asyncio.wait_for(self._take_or_renew(), self._attempt_seconds())
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a lost connection, a timeout, an API server error: all retried
                log.warning("lease %s/%s: %s: %s", self._namespace, self._name, type(error).__name__, error)
                taken = None
            if taken:
                self._renewed_at = self._clock()
                if not self.leading.is_set():
                    log.info("leading as %s", self.identity)
                    self.leading.set()
            elif taken is False:
                self._step_down("another replica holds the lease")
            if self._renew_overdue():
                self._step_down(f"the lease could not be renewed for {RENEW_DEADLINE_SECONDS}s")
            await asyncio.sleep(RETRY_SECONDS)

    async def release(self) -> None:
        """Hand the lease back on a graceful stop, as client-go does, so that another replica leads within
        a retry period instead of a lease duration; a failure only means the lease runs out by itself."""
        if not self.leading.is_set():
            return
        self.leading.clear()
        try:
            lease = await self._leases.read_namespaced_lease(self._name, self._namespace)
            if lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None  # type: ignore[assignment]  # the API's way to say nobody holds it
                lease.spec.lease_duration_seconds = 1
                await self._leases.replace_namespaced_lease(self._name, self._namespace, lease)
                log.info("released the lease")
        except Exception as error:
            log.warning("could not release the lease: %s: %s", type(error).__name__, error)

    def _attempt_seconds(self) -> float:
        """An attempt ends by the renew deadline, so a hung connection cannot keep a leader past it."""
        if not self.leading.is_set() or self._renewed_at is None:
            return RENEW_DEADLINE_SECONDS
        return max(0.1, self._renewed_at + RENEW_DEADLINE_SECONDS - self._clock())

    def _renew_overdue(self) -> bool:
        return (
            self.leading.is_set()
            and self._renewed_at is not None
            and self._clock() - self._renewed_at >= RENEW_DEADLINE_SECONDS
        )

    def _step_down(self, why: str) -> None:
        if self.leading.is_set():
            log.warning("no longer leading: %s", why)
            self.leading.clear()

    def _expired(self, spec: client.V1LeaseSpec) -> bool:
        """Whether another holder's lease has gone a lease duration without changing, by our clock."""
        record = (spec.holder_identity, spec.renew_time, spec.acquire_time, spec.lease_transitions)
        now = self._clock()
        if self._observed is None or self._observed.record != record:
            self._observed = Observed(record, now)
        return now - self._observed.at > (spec.lease_duration_seconds or LEASE_SECONDS)

    async def _take_or_renew(self) -> bool:
        now = datetime.datetime.now(datetime.UTC)
        lease = await kube.unless_missing(self._leases.read_namespaced_lease(self._name, self._namespace))
        if lease is None:
            body = client.V1Lease(metadata=client.V1ObjectMeta(name=self._name), spec=self._spec(now, now, 0))
            return await kube.unless_conflict(self._leases.create_namespaced_lease(self._namespace, body)) is not None
        spec = lease.spec
        mine = spec.holder_identity == self.identity
        if not mine and spec.holder_identity and not self._expired(spec):
            return False
        acquired = spec.acquire_time if mine else now
        transitions = (spec.lease_transitions or 0) + (0 if mine else 1)
        lease.spec = self._spec(acquired, now, transitions)
        replaced = kube.unless_conflict(self._leases.replace_namespaced_lease(self._name, self._namespace, lease))
        return await replaced is not None

    def _spec(self, acquired: datetime.datetime, renewed: datetime.datetime, transitions: int) -> client.V1LeaseSpec:
        return client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=LEASE_SECONDS,
            acquire_time=acquired,
            renew_time=renewed,
            lease_transitions=transitions,
        )
