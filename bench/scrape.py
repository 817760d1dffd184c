"""What a Prometheus scrape of the operator costs with N tasks and a heartbeat per namespace.

One run starts its own control plane and operator, creates N StanTasks (hourly, so none fires
during the measurement) in namespaces of ``--per-namespace`` tasks, each namespace with a heartbeat
that has run, waits until the operator's own metrics say every task is scheduled, then scrapes
``/metrics`` ``--scrapes`` times in a row and prints the median, p90 and largest time and the size.

    .venv/bin/python -m bench.scrape [--tasks 1000] [--per-namespace 100] [--scrapes 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml
from kubernetes_asyncio import client

from stan_controlplane import cluster, processes
from stan_core import install, kube, models

ROOT = Path(__file__).resolve().parent.parent
TASK = {"name": "Bench", "action": "audit_workflows", "schedule": "0 * * * *", "modelId": "model_bench"}
CONFIG = {"heartbeatMinuteSeconds": 0.2}
"""A heartbeat's five-minute interval takes a second, so each has run before the measurement."""


def start_operator(state_dir: Path, kubeconfig: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The operator as a process, and the URL of its metrics."""
    config_path = state_dir / "operator.yaml"
    config_path.write_text(yaml.safe_dump(CONFIG))
    port = processes.free_port()
    command = [sys.executable, "-m", "stan_cli", "operator", "--no-webhook", "--metrics-host", "127.0.0.1"]
    command += ["--metrics-port", str(port), "--liveness", f"http://127.0.0.1:{processes.free_port()}/healthz"]
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "STAN_CONFIG": str(config_path)}
    with (state_dir / "logs" / "operator.log").open("wb") as log:
        return processes.spawn(command, output=log, env=env), f"http://127.0.0.1:{port}/metrics"


def scrape(url: str) -> tuple[float, bytes]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as response:
        body: bytes = response.read()
    return time.perf_counter() - started, body


def gauge(body: bytes, name: str) -> float:
    for line in body.decode().splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return 0.0


async def create(api: client.ApiClient, tasks: int, per_namespace: int) -> None:
    namespaces = [f"scrape-{index:04d}" for index in range((tasks + per_namespace - 1) // per_namespace)]
    core = client.CoreV1Api(api)
    task_objects, heartbeat_objects = kube.Objects(api, models.STAN_TASK), kube.Objects(api, models.STAN_HEARTBEAT)
    for namespace in namespaces:
        await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        await heartbeat_objects.create(
            namespace,
            {
                "apiVersion": models.API_VERSION,
                "kind": models.STAN_HEARTBEAT.kind,
                "metadata": {"name": models.HEARTBEAT_NAME},
                "spec": {"checks": ["workflows", "credits"], "intervalMinutes": 5},
            },
        )
    in_flight = asyncio.Semaphore(16)

    async def one(index: int) -> None:
        body = {"apiVersion": models.API_VERSION, "kind": models.STAN_TASK.kind, "spec": TASK}
        body["metadata"] = {"name": f"task-{index:05d}"}
        async with in_flight:
            await kube.with_retries(lambda: task_objects.create(namespaces[index // per_namespace], body))

    await asyncio.gather(*(one(index) for index in range(tasks)))


async def populate(tasks: int, per_namespace: int) -> None:
    async with await kube.api_client() as api:
        await create(api, tasks, per_namespace)


def measure(args: argparse.Namespace) -> None:
    state_dir = (ROOT / ".stan" / "bench-scrape").resolve()
    plane = cluster.start(state_dir, fresh=True)
    os.environ["KUBECONFIG"] = str(plane.kubeconfig)
    operator = None
    try:
        asyncio.run(install.apply_crds_to_current_cluster())
        operator, url = start_operator(state_dir, plane.kubeconfig)
        print(f"==> creating {args.tasks} StanTasks, {args.per_namespace} a namespace, each with a heartbeat")
        asyncio.run(populate(args.tasks, args.per_namespace))
        while gauge(scrape(url)[1], "stan_tasks_scheduled") < args.tasks:
            time.sleep(1)
        time.sleep(2)  # each heartbeat runs once a second: they all have results now
        samples = [scrape(url) for _ in range(args.scrapes)]
        seconds = sorted(elapsed for elapsed, _ in samples)
        median, p90 = statistics.median(seconds), seconds[int(0.9 * (len(seconds) - 1))]
        print(
            f"==> /metrics with {args.tasks} tasks: {args.scrapes} scrapes, median {median * 1000:.1f} ms, "
            f"p90 {p90 * 1000:.1f} ms, max {seconds[-1] * 1000:.1f} ms, {len(samples[-1][1]) / 1024:.1f} KiB"
        )
    finally:
        if operator is not None:
            processes.stop(operator)
        plane.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scrape", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--per-namespace", type=int, default=100)
    parser.add_argument("--scrapes", type=int, default=50)
    measure(parser.parse_args(argv))


if __name__ == "__main__":
    main()
