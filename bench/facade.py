"""The REST facade under a steady load: latency and throughput with 1,000 tasks in one tenant.

Reads are served from the watch-backed cache, so GET and list should cost the
same whatever the API server is doing; creates go to the API server and wait
for the operator's first status. One run starts its own control plane,
operator and facade, creates the tasks through the API (measuring POST), then
sends GET /tasks/{id} and, beside it, GET /tasks at fixed rates from this
process, an open loop: requests leave on schedule whether or not earlier ones
answered. The facade runs with its default limits; the load is spread over a
few API keys of one tenant, as each key's rate limit expects of a busy client.

    .venv/bin/python -m bench.facade [--tasks 1000] [--rate 200] [--list-rate 20] [--seconds 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import httpx

from bench import plot
from stan_api import keystore
from stan_controlplane import cluster, processes
from stan_core import install, kube

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TASK = {"name": "Bench", "action": "audit_workflows", "schedule": "0 9 * * *", "modelId": "model_bench"}


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(1000 * statistics.median(ordered), 2),
        "p99_ms": round(1000 * ordered[max(0, int(len(ordered) * 0.99) - 1)], 2),
        "max_ms": round(1000 * ordered[-1], 2),
        "count": len(ordered),
    }


async def timed(http: httpx.AsyncClient, method: str, path: str, **kwargs: object) -> tuple[float, int]:
    """Latency and status; a failed connection counts as status 0, so an overload shows as errors."""
    started = time.perf_counter()
    try:
        answer = await http.request(method, path, **kwargs)
    except httpx.TransportError:
        return time.perf_counter() - started, 0
    return time.perf_counter() - started, answer.status_code


async def steady(
    http: httpx.AsyncClient, paths: list[str], keys: list[dict[str, str]], rate: float, seconds: float
) -> tuple[dict, list[float]]:
    """Send ``rate`` requests a second for ``seconds`` on a fixed schedule, taking the keys in turn:
    the figures, and every latency."""
    pending = []
    start = time.perf_counter()
    for index in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, start + index / rate - time.perf_counter()))
        pending.append(asyncio.create_task(timed(http, "GET", random.choice(paths), headers=keys[index % len(keys)])))
    answers = await asyncio.gather(*pending)
    elapsed = time.perf_counter() - start
    errors = sum(1 for _, code in answers if code != 200)
    latencies = [latency for latency, _ in answers]
    return {
        **percentiles(latencies),
        "errors": errors,
        "throughput_per_s": round(len(answers) / elapsed, 1),
        "target_rate_per_s": rate,
    }, latencies


async def run(args: argparse.Namespace) -> tuple[dict, dict[str, list[float]]]:
    """The figures, and every latency by kind of request."""
    plane = cluster.start(ROOT / ".stan" / "bench-facade", fresh=True)
    os.environ["KUBECONFIG"] = str(plane.kubeconfig)
    await install.apply_crds_to_current_cluster()
    logs = plane.state_dir / "logs"
    port = processes.free_port()
    with (logs / "operator.log").open("ab") as operator_log, (logs / "facade.log").open("ab") as facade_log:
        operator = processes.spawn(
            [
                sys.executable,
                "-m",
                "stan_cli",
                "operator",
                "--no-webhook",
                "--liveness",
                f"http://127.0.0.1:{processes.free_port()}/healthz",
            ],
            output=operator_log,
        )
        facade = processes.spawn([sys.executable, "-m", "stan_cli", "api", "--port", str(port)], output=facade_log)
    try:
        api = await kube.api_client()
        async with api:
            issued = [await keystore.issue(api, "bench", ["stan:execute"], None) for _ in range(args.keys + 1)]
        principal = issued[0][1]
        keys = [{"X-API-Key": key} for key, _ in issued]
        get_keys, list_keys = keys[:-1], keys[-1:]
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=30, limits=httpx.Limits(max_connections=200)
        ) as http:
            while True:
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
            print(f"==> creating {args.tasks} tasks through the API, 8 at a time", flush=True)
            gate = asyncio.Semaphore(8)

            async def create(index: int) -> tuple[float, int]:
                async with gate:
                    return await timed(http, "POST", "/api/v1/stan/tasks", json=TASK, headers=keys[index % len(keys)])

            created = await asyncio.gather(*(create(index) for index in range(args.tasks)))
            listed = (await http.get("/api/v1/stan/tasks", headers=list_keys[0])).json()
            ids = [f"/api/v1/stan/tasks/{task['id']}" for task in listed]
            posted = [latency for latency, _ in created]
            result = {
                "tasks": len(ids),
                "tenant": principal.namespace,
                "keys": len(keys),
                "post_tasks": {**percentiles(posted), "errors": sum(1 for _, code in created if code != 201)},
                "runs": [],
            }
            latencies = {"POST /tasks, 8 in flight": posted}
            for repeat in range(1, args.repeats + 1):
                print(
                    f"==> run {repeat}: {len(ids)} tasks; GET /tasks/{{id}} at {args.rate:g}/s beside GET /tasks "
                    f"at {args.list_rate:g}/s for {args.seconds:g}s",
                    flush=True,
                )
                (get_task, got), (list_tasks, lists) = await asyncio.gather(
                    steady(http, ids, get_keys, args.rate, args.seconds),
                    steady(http, ["/api/v1/stan/tasks"], list_keys, args.list_rate, args.seconds),
                )
                result["runs"].append({"get_task": get_task, "list_tasks": list_tasks})
                latencies[f"GET /tasks/{{id}} at {args.rate:g}/s, run {repeat}"] = got
                latencies[f"GET /tasks ({len(ids)} tasks) at {args.list_rate:g}/s, run {repeat}"] = lists
    finally:
        processes.stop(facade)
        processes.stop(operator)
        plane.stop()
    return result, latencies


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0, help="GET /tasks/{id} requests per second")
    parser.add_argument(
        "--list-rate",
        type=float,
        default=20.0,
        help="GET /tasks requests per second (each answers every task of the tenant)",
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3, help="measurements of the two loads side by side")
    parser.add_argument(
        "--keys",
        type=int,
        default=5,
        help="API keys the GET /tasks/{id} load is spread over (the list load has one more)",
    )
    args = parser.parse_args(argv)
    result, latencies = asyncio.run(run(args))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"facade-N{args.tasks}.json").write_text(json.dumps(result, indent=2))
    plot.draw_latencies(
        RESULTS / f"facade-N{args.tasks}.png",
        f"Facade latency, {args.tasks} tasks in the tenant, {args.seconds:g} s per run, both loads side by side",
        latencies,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
