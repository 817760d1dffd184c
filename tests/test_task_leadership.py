"""Two operator replicas: one fires every tick; when it dies, loses its Lease or is cut off from the
API server, the standby takes over, and nothing runs twice. Without a Lease both fire, and the claim
alone keeps each tick to one run."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest
import yaml
from kubernetes_asyncio import client

from stan_core import kube, models
from stan_operator import leadership

from . import tasks
from .conftest import STATE_DIR, OperatorProcess, eventually

UTC = datetime.UTC
EVERY_2S = "*/2 * * * * *"
TICK = datetime.timedelta(seconds=2)


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
    missing = [earlier for earlier, later in itertools.pairwise(ticks) if later - earlier != interval]
    assert missing == [], f"no tick was lost: {ticks}"


async def test_the_standby_takes_over_without_duplicates(
    api: client.ApiClient, private_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAN_NAMESPACE", private_namespace)
    replicas = [
        OperatorProcess(f"{private_namespace}-{index}", "--namespace", private_namespace, "--leader-election")
        for index in range(2)
    ]
    try:
        holder = await eventually(lambda: _holder(api, private_namespace), timeout=30)
        leader = next(r for r in replicas if holder.endswith(f"-{r.process.pid}"))
        standby = next(r for r in replicas if r is not leader)
        await tasks.create(api, private_namespace, "steady", schedule=EVERY_2S, runHistoryLimit=100)

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
            after = [
                run
                for run in found
                if run.startedAt and run.startedAt > killed_at + datetime.timedelta(seconds=handover)
            ]
            return found if len(after) >= 2 else None

        final = await eventually(ran_after_takeover, timeout=30)
        before = [run for run in final if run.startedAt and run.startedAt < killed_at]
        assert len(before) >= 3, "the standby adopted the leader's recorded runs: its writes keep them"
        interrupted = [run for run in final if run.message.startswith("the operator stopped during this run")]
        assert len(interrupted) <= 1, "only a run the leader was in the middle of is settled as failed"
        _assert_each_tick_once(final, TICK)
        print(f"handover: lease taken over {handover:.1f}s after the leader was killed")
    finally:
        for replica in replicas:
            if replica.process.poll() is None:
                replica.stop()


async def test_two_operators_without_a_lease_record_each_tick_once(
    api: client.ApiClient, private_namespace: str
) -> None:
    """Both start every run at its tick; each tick's claim is won by one, and the other's run is dropped."""
    replicas = [
        OperatorProcess(f"{private_namespace}-race-{index}", "--namespace", private_namespace) for index in range(2)
    ]
    try:
        await tasks.create(api, private_namespace, "contested", schedule=EVERY_2S, runHistoryLimit=100)
        final = await eventually(lambda: _finished_runs(api, private_namespace, "contested", 8), timeout=40)
        assert all(run.result == models.RunResult.SUCCEEDED for run in final)
        _assert_each_tick_once(final, TICK)
        lost = sum(replica.log_path.read_text().count("not claimed") for replica in replicas)
        assert lost >= 1, "the two operators contended for the ticks"
    finally:
        for replica in replicas:
            replica.stop()


async def test_edits_between_claims_lose_no_tick(api: client.ApiClient, private_namespace: str) -> None:
    """A claim replaces status at the version the operator last wrote: each edit since (a label here)
    answers 409, and the operator reads the object and claims the tick all the same."""
    operator = OperatorProcess(f"{private_namespace}-edits", "--namespace", private_namespace)
    try:
        await tasks.create(api, private_namespace, "edited", schedule=EVERY_2S, runHistoryLimit=100)
        await eventually(lambda: _finished_runs(api, private_namespace, "edited", 1), timeout=30)
        objects = kube.Objects(api, models.STAN_TASK)
        for edit in range(5):
            await objects.patch(private_namespace, "edited", {"metadata": {"labels": {"edit": str(edit)}}})
            await asyncio.sleep(TICK.total_seconds())
        final = await eventually(lambda: _finished_runs(api, private_namespace, "edited", 8), timeout=30)
        _assert_each_tick_once(final, TICK)
        assert "not claimed" not in operator.log_path.read_text(), "no claim was lost to an edit"
    finally:
        operator.stop()


async def _lease(api: client.ApiClient, namespace: str) -> client.V1Lease:
    return await client.CoordinationV1Api(api).read_namespaced_lease("stan-operator", namespace)


def _started_between(runs: list[models.Run], start: datetime.datetime, end: datetime.datetime) -> list[models.Run]:
    return [run for run in runs if run.startedAt and start < run.startedAt < end]


async def test_a_replica_that_lost_the_lease_claims_nothing(
    api: client.ApiClient, private_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAN_NAMESPACE", private_namespace)
    replica = OperatorProcess(f"{private_namespace}-lost", "--namespace", private_namespace, "--leader-election")
    try:
        await eventually(lambda: _holder(api, private_namespace), timeout=30)
        await tasks.create(api, private_namespace, "held", schedule=EVERY_2S, runHistoryLimit=100)
        await eventually(lambda: _finished_runs(api, private_namespace, "held", 2), timeout=30)

        async def forge() -> None:
            """Another holder renews the Lease as often as a replica elsewhere would."""
            while True:
                lease = await _lease(api, private_namespace)
                lease.spec.holder_identity = "elsewhere"
                lease.spec.renew_time = datetime.datetime.now(UTC)
                with contextlib.suppress(client.ApiException):
                    await client.CoordinationV1Api(api).replace_namespaced_lease(
                        "stan-operator", private_namespace, lease
                    )
                await asyncio.sleep(leadership.RETRY_SECONDS)

        forging = asyncio.create_task(forge())
        try:
            await eventually(lambda: _says(replica, "no longer leading: another replica holds the lease"), timeout=30)
            stepped_down = datetime.datetime.now(UTC)
            # A replica without the Lease writes nothing, so nothing shows the window passing: it spans four ticks.
            await asyncio.sleep(4 * TICK.total_seconds())
            quiet_until = datetime.datetime.now(UTC)
        finally:
            forging.cancel()
        # The forged holder stops renewing; a lease duration later the replica takes the Lease back.
        await eventually(lambda: _holder_is(api, private_namespace, replica), timeout=40)
        final = await eventually(lambda: _finished_runs(api, private_namespace, "held", 8), timeout=40)
        assert _started_between(final, stepped_down, quiet_until) == [], "it fired nothing without the Lease"
        _assert_each_tick_once(final, TICK)
    finally:
        replica.stop()


async def _says(replica: OperatorProcess, text: str) -> bool:
    return text in replica.log_path.read_text()


async def _holder_is(api: client.ApiClient, namespace: str, replica: OperatorProcess) -> bool:
    return (await _holder(api, namespace) or "").endswith(f"-{replica.process.pid}")


class Cable:
    """A TCP relay from another port of the API server's host to the API server, which a test can cut:
    one replica reaches the API server only through it, as across a network that may fail.

    It listens on the API server's address, loopback or the node's link, because that is the name its
    serving certificate holds and the kubeconfig's server names."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, self._upstream[0], self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._upstream)
        link = asyncio.current_task()
        assert link is not None
        self._links.add(link)
        try:
            await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))
        finally:
            self._links.discard(link)
            for side in (writer, upstream_writer):
                side.close()

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.close()

    async def cut(self) -> None:
        """Every connection dropped and new ones refused."""
        assert self._server is not None
        self._server.close()
        for link in list(self._links):
            link.cancel()
        await self._server.wait_closed()


@contextlib.asynccontextmanager
async def _cable_to_api_server() -> AsyncIterator[tuple[Cable, Path]]:
    """A cable to the API server of ``KUBECONFIG``, and a kubeconfig that goes through it."""
    kubeconfig = yaml.safe_load(Path(os.environ["KUBECONFIG"]).read_text())
    server = kubeconfig["clusters"][0]["cluster"]["server"]
    host, port = re.match(r"https://([^:/]+):(\d+)", server).groups()  # type: ignore[union-attr]
    cable = Cable((host, int(port)))
    await cable.start()
    kubeconfig["clusters"][0]["cluster"]["server"] = f"https://{host}:{cable.port}"
    path = STATE_DIR / f"cable-{cable.port}.kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    try:
        yield cable, path
    finally:
        with contextlib.suppress(Exception):
            await cable.cut()


def _log_time(replica: OperatorProcess, text: str) -> datetime.datetime:
    line = next(line for line in replica.log_path.read_text().splitlines() if text in line)
    return datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").astimezone(UTC)


async def test_a_leader_cut_off_stops_firing_before_its_lease_runs_out(
    api: client.ApiClient, private_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAN_NAMESPACE", private_namespace)
    async with _cable_to_api_server() as (cable, kubeconfig):
        leader = OperatorProcess(
            f"{private_namespace}-cut", "--namespace", private_namespace, "--leader-election", kubeconfig=kubeconfig
        )
        standby = None
        try:
            await eventually(lambda: _holder_is(api, private_namespace, leader), timeout=60)
            standby = OperatorProcess(
                f"{private_namespace}-other", "--namespace", private_namespace, "--leader-election"
            )
            await tasks.create(api, private_namespace, "cut", schedule=EVERY_2S, runHistoryLimit=100)
            await eventually(lambda: _finished_runs(api, private_namespace, "cut", 3), timeout=60)
            last_renewal = (await _lease(api, private_namespace)).spec.renew_time
            await cable.cut()
            cut_at = datetime.datetime.now(UTC)
            started = time.monotonic()
            await eventually(lambda: _holder_is(api, private_namespace, standby), timeout=60, interval=0.2)
            gap = time.monotonic() - started
            await eventually(lambda: _says(leader, "no longer leading"), timeout=60)
            stepped_down = _log_time(leader, "no longer leading")
            final = await eventually(lambda: _finished_runs(api, private_namespace, "cut", 12), timeout=60)
            _assert_each_tick_once(final, TICK)
            lease_end = last_renewal + datetime.timedelta(seconds=leadership.LEASE_SECONDS)
            assert stepped_down < lease_end, f"stepped down at {stepped_down}, its lease ran to {lease_end}"
            print(
                f"cut off at {cut_at:%H:%M:%S.%f}: the leader stopped leading "
                f"{(stepped_down - cut_at).total_seconds():.1f}s later, "
                f"{(lease_end - stepped_down).total_seconds():.1f}s before its lease ran out; "
                f"the standby held the Lease {gap:.1f}s after the cut"
            )
        finally:
            for replica in (leader, standby):
                if replica is not None and replica.process.poll() is None:
                    replica.stop()


async def test_a_leader_stopped_gracefully_hands_the_lease_over_at_once(
    api: client.ApiClient, private_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAN_NAMESPACE", private_namespace)
    leader = OperatorProcess(f"{private_namespace}-first", "--namespace", private_namespace, "--leader-election")
    standby = None
    try:
        await eventually(lambda: _holder_is(api, private_namespace, leader), timeout=60)
        standby = OperatorProcess(f"{private_namespace}-second", "--namespace", private_namespace, "--leader-election")
        leader.stop()
        started = time.monotonic()
        await eventually(lambda: _holder_is(api, private_namespace, standby), timeout=30, interval=0.2)
        handover = time.monotonic() - started
        assert "released the lease" in leader.log_path.read_text()
        assert handover < leadership.LEASE_SECONDS, f"taken over {handover:.1f}s after the stop, not at lease expiry"
        print(f"graceful handover: the standby led {handover:.1f}s after the leader was stopped")
    finally:
        for replica in (leader, standby):
            if replica is not None and replica.process.poll() is None:
                replica.stop()
