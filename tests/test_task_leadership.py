"""Two operator replicas: one fires every tick; when it dies the standby takes over, nothing runs twice."""
from __future__ import annotations

import datetime
import time

import pytest
from kubernetes_asyncio import client

from stan_operator import models

from . import tasks
from .conftest import OperatorProcess, eventually

UTC = datetime.timezone.utc


async def _holder(api: client.ApiClient, namespace: str) -> str | None:
    try:
        lease = await client.CoordinationV1Api(api).read_namespaced_lease("stan-operator", namespace)
    except client.ApiException:
        return None
    return lease.spec.holder_identity


async def test_the_standby_takes_over_without_duplicates(api: client.ApiClient, private_namespace: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAN_NAMESPACE", private_namespace)
    replicas = [OperatorProcess(f"{private_namespace}-{index}", "--namespace", private_namespace,
                                "--leader-election") for index in range(2)]
    try:
        holder = await eventually(lambda: _holder(api, private_namespace), timeout=30)
        leader = next(r for r in replicas if holder.endswith(f"-{r.process.pid}"))
        standby = next(r for r in replicas if r is not leader)
        await tasks.create(api, private_namespace, "steady", schedule="*/2 * * * * *", runHistoryLimit=100)

        async def runs(count: int) -> list[models.Run] | None:
            status = await tasks.status(api, private_namespace, "steady")
            found = tasks.finished(status.recentRuns)
            return found if len(found) >= count else None

        await eventually(lambda: runs(3), timeout=30)
        leader.kill()
        killed_at = datetime.datetime.now(UTC)
        started = time.monotonic()

        async def taken_over() -> bool:
            return (await _holder(api, private_namespace) or "").endswith(f"-{standby.process.pid}")

        await eventually(taken_over, timeout=60, interval=0.5)
        handover = time.monotonic() - started

        async def ran_after_takeover() -> list[models.Run] | None:
            found = await runs(1) or []
            after = [run for run in found if run.startedAt and run.startedAt > killed_at + datetime.timedelta(
                seconds=handover)]
            return found if len(after) >= 2 else None

        final = await eventually(ran_after_takeover, timeout=30)
        interrupted = [run for run in final if run.message.startswith("the operator stopped during this run")]
        assert len(interrupted) <= 1, "only a run the leader was in the middle of is settled as failed"
        ticks = sorted(run.scheduledAt for run in final)
        assert len(ticks) == len(set(ticks)), "no tick ran twice"
        missing = [earlier for earlier, later in zip(ticks, ticks[1:]) if later - earlier != datetime.timedelta(
            seconds=2)]
        assert missing == [], f"ticks missed during the handover of {handover:.1f}s: {ticks}"
        print(f"handover: lease taken over {handover:.1f}s after the leader was killed")
    finally:
        for replica in replicas:
            if replica.process.poll() is None:
                replica.stop()
