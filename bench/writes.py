"""The API server's ceiling for StanTask status writes: how fast this control plane takes the claims of a
shared tick from a client that does nothing else.

At a shared tick the operator stores one claim per task, a replacement of status at the task's
resourceVersion. This sends exactly those writes, as the operator would store them (``--history`` runs
in ``recentRuns``), without an operator: no watch, no runs, no scheduling. Each round moves every task one
tick on. What a round takes bounds the record lag any operator can reach on this machine.

    .venv/bin/python -m bench.writes [--tasks 10000] [--history 10] [--rounds 3] [--in-flight 32]

writes ``bench/results/writes-N<N>-history<H>.json`` and prints a round a line.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import time
from pathlib import Path

from bench.lateness import Summary
from bench.probes import read_process
from bench.ticks import RESULTS, ROOT, Layout, create_all, list_tasks
from stan_controlplane import cluster
from stan_core import install, kube, models
from stan_operator.claims import CLAIMS_IN_FLIGHT

UTC = datetime.UTC
MESSAGE = "All workflows healthy (99 tasks audited)"
"""What the benchmark's tasks (``audit_workflows``) record on success."""


def status(tick: datetime.datetime, history: int, first: datetime.datetime) -> dict:
    """A task's status once it has run every minute from ``first`` through ``tick``, as the operator stores it."""
    minute = datetime.timedelta(minutes=1)
    runs = [
        models.Run(
            runId=f"run_{int(tick.timestamp()) - 60 * age:012x}",
            scheduledAt=tick - age * minute,
            startedAt=tick - age * minute + datetime.timedelta(milliseconds=450),
            finishedAt=tick - age * minute + datetime.timedelta(milliseconds=900),
            result=models.RunResult.SUCCEEDED,
            message=MESSAGE,
        )
        for age in range(history)
    ]
    model = models.StanTaskStatus(
        status="active",
        lastRunAt=runs[0].startedAt,
        nextRunAt=tick + minute,
        lastScheduledAt=tick,
        recentRuns=runs,
        lastSuccessfulAt=runs[0].finishedAt,
        ranTicks=[models.TickSpan(schedule="* * * * *", timeZone="UTC", first=first, last=tick)],
        conditions=[
            models.Condition(
                type="Ready",
                status="True",
                reason="Scheduled",
                message="The task fires on its schedule.",
                lastTransitionTime=first,
                observedGeneration=1,
            )
        ],
        observedGeneration=1,
    )
    dumped: dict = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


async def measure(args: argparse.Namespace, plane: cluster.ControlPlane) -> dict:
    await install.apply_crds_to_current_cluster()
    api = await kube.api_client()
    layout = Layout(tasks=args.tasks, per_namespace=100, history=args.history, cronjobs=False)
    print(f"==> creating {args.tasks} StanTasks", flush=True)
    await create_all(api, layout, 16)
    versions = {
        (body["metadata"]["namespace"], body["metadata"]["name"]): body["metadata"]["resourceVersion"]
        async for body in list_tasks(api)
    }
    objects = kube.Objects(api, models.STAN_TASK)
    servers = {name: plane.processes[name].pid for name in ("apiserver", "etcd")}
    first = datetime.datetime.now(UTC).replace(second=0, microsecond=0)
    in_flight = asyncio.Semaphore(args.in_flight)

    async def claim(key: tuple[str, str], body: dict, started: float) -> float:
        """Store ``body`` as the task's status at its version; the seconds from the round's start."""
        async with in_flight:
            stored = await objects.replace_status(*key, versions[key], body)
        versions[key] = stored["metadata"]["resourceVersion"]
        return time.monotonic() - started

    rounds = []
    # Round 0 fills the history, as the ticks before a measured one have; it is not reported.
    for number in range(args.rounds + 1):
        tick = first + datetime.timedelta(minutes=args.history + number)
        body = status(tick, args.history, first)
        before = {name: read_process(pid) for name, pid in servers.items()}
        started = time.monotonic()
        stored_after = await asyncio.gather(*(claim(key, body, started) for key in versions))
        took = time.monotonic() - started
        after = {name: read_process(pid) for name, pid in servers.items()}
        if number == 0:
            print(f"==> every task has {args.history} runs in its history; measuring {args.rounds} rounds", flush=True)
            continue
        cpu = {name: after[name].cpu - before[name].cpu for name in servers}
        lag = Summary.of(stored_after)
        row = {
            "writes": len(stored_after),
            "seconds": took,
            "writes_per_second": len(stored_after) / took,
            "stored_p50": lag.p50,
            "stored_p99": lag.p99,
            "apiserver_cores": cpu["apiserver"] / took,
            "apiserver_ms_per_write": 1000 * cpu["apiserver"] / len(stored_after),
            "etcd_cores": cpu["etcd"] / took,
            "apiserver_rss_mib": after["apiserver"].rss / 2**20,
        }
        rounds.append(row)
        print(
            f"round {number}: {row['writes']} writes in {took:.1f} s ({row['writes_per_second']:.0f}/s), stored "
            f"p50 {lag.p50:.1f} s p99 {lag.p99:.1f} s; API server {row['apiserver_cores']:.2f} cores, "
            f"{row['apiserver_ms_per_write']:.2f} ms CPU a write, RSS {row['apiserver_rss_mib']:.0f} MiB; "
            f"etcd {row['etcd_cores']:.2f} cores",
            flush=True,
        )
    await api.close()
    return {
        "parameters": {
            "tasks": args.tasks,
            "history": args.history,
            "rounds": args.rounds,
            "in_flight": args.in_flight,
            "status_bytes": len(json.dumps(status(first, args.history, first))),
        },
        "load_average": os.getloadavg(),
        "rounds": rounds,
    }


async def run(args: argparse.Namespace) -> dict:
    plane = cluster.start((ROOT / args.state_dir).resolve(), fresh=True)
    os.environ["KUBECONFIG"] = str(plane.kubeconfig)
    try:
        return await measure(args, plane)
    finally:
        plane.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.writes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10000, help="StanTasks, each written once a round")
    parser.add_argument(
        "--history",
        type=int,
        default=10,
        choices=range(1, 101),
        metavar="1..100",
        help="runs in each status, as spec.runHistoryLimit allows (default 10, its default)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds (default 3)")
    parser.add_argument(
        "--in-flight",
        type=int,
        default=CLAIMS_IN_FLIGHT,
        help=f"writes in flight (default {CLAIMS_IN_FLIGHT}, as the operator)",
    )
    parser.add_argument("--state-dir", default=".stan/bench-writes", help="control-plane state")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path: Path = RESULTS / f"writes-N{args.tasks}-history{args.history}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"==> wrote {path}")


if __name__ == "__main__":
    main()
