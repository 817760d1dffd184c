"""Leader election on a coordination.k8s.io Lease: only the holder fires ticks.

Every replica watches and keeps its timing heap current, so a standby that
takes over fires the next due ticks at once (a hot standby). kopf's peering is
not used for this: it pauses watching, not the scheduler's own loop, and it
pauses every replica when two share a priority. The tick claim in status stays
the last word on exactly-once; the Lease keeps the standby from racing for it.
"""
from __future__ import annotations

import asyncio
import datetime
import logging

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

LEASE_SECONDS = 15
RENEW_SECONDS = 5
log = logging.getLogger(__name__)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class Leadership:
    def __init__(self, api: client.ApiClient, namespace: str, name: str, identity: str) -> None:
        self._leases = client.CoordinationV1Api(api)
        self._namespace = namespace
        self._name = name
        self.identity = identity
        self.leading = asyncio.Event()

    async def run(self) -> None:
        """Try to take or renew the lease every few seconds, forever."""
        renewed_at: datetime.datetime | None = None
        while True:
            try:
                if await self._take_or_renew():
                    renewed_at = _now()
                    if not self.leading.is_set():
                        log.info("leading as %s", self.identity)
                        self.leading.set()
                else:
                    self._step_down()
            except ApiException as error:
                log.warning("lease %s/%s: %s", self._namespace, self._name, error.reason)
                if renewed_at is None or (_now() - renewed_at).total_seconds() > LEASE_SECONDS:
                    self._step_down()
            await asyncio.sleep(RENEW_SECONDS)

    def _step_down(self) -> None:
        if self.leading.is_set():
            log.warning("no longer leading")
            self.leading.clear()

    async def _take_or_renew(self) -> bool:
        now = _now()
        try:
            lease = await self._leases.read_namespaced_lease(self._name, self._namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            body = client.V1Lease(metadata=client.V1ObjectMeta(name=self._name), spec=self._spec(now, now, 0))
            try:
                await self._leases.create_namespaced_lease(self._namespace, body)
            except ApiException as conflict:
                if conflict.status == 409:
                    return False
                raise
            return True
        spec = lease.spec
        mine = spec.holder_identity == self.identity
        expired = spec.renew_time is None or (now - spec.renew_time).total_seconds() > (
            spec.lease_duration_seconds or LEASE_SECONDS)
        if not mine and not expired:
            return False
        acquired = spec.acquire_time if mine else now
        transitions = (spec.lease_transitions or 0) + (0 if mine else 1)
        lease.spec = self._spec(acquired, now, transitions)
        try:
            await self._leases.replace_namespaced_lease(self._name, self._namespace, lease)
        except ApiException as error:
            if error.status == 409:
                return False
            raise
        return True

    def _spec(self, acquired: datetime.datetime, renewed: datetime.datetime, transitions: int) -> client.V1LeaseSpec:
        return client.V1LeaseSpec(holder_identity=self.identity, lease_duration_seconds=LEASE_SECONDS,
                                  acquire_time=acquired, renew_time=renewed, lease_transitions=transitions)
