"""Two operator replicas: one fires every tick; when it dies the standby takes over, nothing runs twice.
Without a Lease both fire, and the claim alone keeps each tick to one run."""
from __future__ import annotations

import datetime
import time
from collections.abc import Awaitable

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


async def _finished_runs(api: client.ApiClient, namespace: str, name: str, count: int) -> list[models.Run] | None:
    found = tasks.finished((await tasks.status(api, namespace, name)).recentRuns)
    return found if len(found) >= count else None


def _assert_each_tick_once(runs: list[models.Run], interval: datetime.timedelta) -> None:
    ticks = sorted(run.scheduledAt for run in runs)
    assert len(ticks) == len(set(ticks)), "no tick ran twice"
    missing = [earlier for earlier, later in zip(ticks, ticks[1:]) if later - earlier != interval]
    assert missing == [], f"no tick was lost: {ticks}"


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

        def runs(count: int) -> Awaitable[list[models.Run] | None]:
            return _finished_runs(api, private_namespace, "steady", count)

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
        _assert_each_tick_once(final, datetime.timedelta(seconds=2))
        print(f"handover: lease taken over {handover:.1f}s after the leader was killed")
    finally:
        for replica in replicas:
            if replica.process.poll() is None:
                replica.stop()


async def test_two_operators_without_a_lease_record_each_tick_once(api: client.ApiClient,
                                                                   private_namespace: str) -> None:
    """Both start every run at its tick; each tick's claim is won by one, and the other's run is dropped."""
    replicas = [OperatorProcess(f"{private_namespace}-race-{index}", "--namespace", private_namespace)
                for index in range(2)]
    try:
        await tasks.create(api, private_namespace, "contested", schedule="*/2 * * * * *", runHistoryLimit=100)
        final = await eventually(lambda: _finished_runs(api, private_namespace, "contested", 8), timeout=40)
        assert all(run.result == models.RunResult.SUCCEEDED for run in final)
        _assert_each_tick_once(final, datetime.timedelta(seconds=2))
        lost = sum(replica.log_path.read_text().count("not claimed") for replica in replicas)
        assert lost >= 1, "the two operators contended for the ticks"
    finally:
        for replica in replicas:
            replica.stop()
