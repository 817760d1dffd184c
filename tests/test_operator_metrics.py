"""The operator's metrics, scraped from a real operator process: each moves when its event happens, and
every metric the chart's alerts and dashboard query is there.

One operator, with leader election, watches a private namespace. Its tasks succeed, fail and miss
their ticks; its heartbeat runs a check that breaks; a second replica stands by and two replicas
without a Lease race for claims. The figures are read from ``/metrics`` as Prometheus would.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest
from kubernetes_asyncio import client
from prometheus_client import Metric
from prometheus_client.parser import text_string_to_metric_families

from . import heartbeats, tasks
from .conftest import OperatorProcess, eventually
from .test_alerts import OPERATOR_METRICS

EVERY_SECOND = "* * * * * *"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def exposition(operator: OperatorProcess) -> str:
    with urllib.request.urlopen(operator.metrics, timeout=5) as response:
        return str(response.read().decode())


def scrape(operator: OperatorProcess) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition(operator))
        for sample in family.samples
    }


def queried_name(family: Metric) -> str:
    """The name PromQL gives a family: the parser drops a counter's ``_total``."""
    return f"{family.name}_total" if family.type == "counter" else family.name


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 for a series not exported yet (a counter before its first event)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def operators(private_namespace: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[OperatorProcess]]:
    """Operators for the private namespace, whose Lease lives there too; all stopped at the end."""
    monkeypatch.setenv("STAN_NAMESPACE", private_namespace)
    started: list[OperatorProcess] = []
    yield started
    for process in started:
        if process.process.poll() is None:
            process.stop()


def start(started: list[OperatorProcess], namespace: str, *args: str) -> OperatorProcess:
    process = OperatorProcess(f"{namespace}-metrics-{len(started)}", "--namespace", namespace, *args)
    started.append(process)
    return process


async def test_task_and_heartbeat_metrics_move_with_their_events(
    api: client.ApiClient, private_namespace: str, operators: list[OperatorProcess]
) -> None:
    leader = start(operators, private_namespace, "--leader-election")
    ns = private_namespace

    async def leads() -> bool:
        return value(scrape(leader), "stan_leader") == 1

    await eventually(leads, timeout=30)
    standby = start(operators, private_namespace, "--leader-election")
    assert value(scrape(standby), "stan_leader") == 0, "a replica without the Lease says so"

    before = scrape(leader)
    await heartbeats.create(api, ns, checks=["greets", "explodes"], intervalMinutes=5)
    await tasks.create(api, ns, "fine", schedule=EVERY_SECOND, action="audit_workflows")
    await tasks.create(api, ns, "broken", schedule=EVERY_SECOND, action="run_heartbeat")
    await tasks.create(api, ns, "late", schedule=EVERY_SECOND, startingDeadlineSeconds=0)

    async def moved() -> Samples | None:
        now = scrape(leader)
        return now if value(now, "stan_task_consecutive_failures_max", namespace=ns) >= 2 else None

    after = await eventually(moved, timeout=60)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("stan_task_start_delay_seconds_count", namespace=ns) >= 2, "each started run's delay is observed"
    assert value(after, "stan_task_start_delay_seconds_bucket", namespace=ns, le="+Inf") == value(
        after, "stan_task_start_delay_seconds_count", namespace=ns
    )
    assert grew("stan_task_runs_total", namespace=ns, result="succeeded") >= 1
    assert grew("stan_task_runs_total", namespace=ns, result="failed") >= 2
    assert grew("stan_task_runs_total", namespace=ns, result="skipped") >= 1, "a tick past its deadline is skipped"
    assert grew("stan_task_ticks_missed_total", namespace=ns) >= 1, "and counted as missed"
    assert value(after, "stan_tasks_known") == 3
    assert value(after, "stan_tasks_scheduled") == 3
    assert value(after, "stan_tick_heap_depth") >= 3
    assert value(after, "stan_heartbeat_healthy", namespace=ns) == 0, "the exploding check makes it unhealthy"
    assert value(after, "stan_heartbeat_check_status", namespace=ns, check="explodes", status="error") == 1
    assert value(after, "stan_heartbeat_check_status", namespace=ns, check="greets", status="ok") == 1
    assert value(after, "stan_heartbeat_check_status", namespace=ns, check="greets", status="error") == 0
    assert grew("stan_heartbeat_run_duration_seconds_count", namespace=ns) >= 1
    assert value(scrape(standby), "stan_task_runs_total", namespace=ns, result="succeeded") == 0, (
        "the standby records no run"
    )
    exported = {queried_name(family): family.type for family in text_string_to_metric_families(exposition(leader))}
    assert {name: exported.get(name) for name in OPERATOR_METRICS} == OPERATOR_METRICS, (
        "every metric the chart's alerts and dashboard query is exported, with its type"
    )

    await heartbeats.patch(api, ns, {"spec": {"checks": ["greets"]}})

    async def recovered() -> bool:
        return value(scrape(leader), "stan_heartbeat_healthy", namespace=ns) == 1

    await eventually(recovered, timeout=30)


async def test_a_claim_lost_to_another_replica_is_counted(
    api: client.ApiClient, private_namespace: str, operators: list[OperatorProcess]
) -> None:
    """Two replicas without a Lease race for every tick; the one whose compare-and-swap fails counts it."""
    racing = [start(operators, private_namespace), start(operators, private_namespace)]
    for number in range(5):
        await tasks.create(api, private_namespace, f"raced-{number}", schedule=EVERY_SECOND)

    async def lost() -> float | None:
        total = sum(value(scrape(replica), "stan_task_claims_lost_total") for replica in racing)
        return total or None

    assert await eventually(lost, timeout=60) >= 1
