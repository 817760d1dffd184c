"""Tick lateness at scale: Stan next to batch/v1 CronJob on the same control plane, and what the operator costs.

Stan fires every task from one heap in one Python process, where Kubernetes
has the CronJob controller; this measures whether that holds up when N tasks
and N CronJobs share the same minute tick (the worst case: every tick is a
thundering herd), and what the operator spends in memory, CPU and API writes
to do it. One run starts its own control plane and operator, so nothing else
shares the API server but the person's other work on the machine.

    .venv/bin/python -m bench.ticks --tasks 1000 [--ticks 3]

writes ``bench/results/ticks-N<N>.json`` and ``.png`` and prints a summary;
bench/README.md says what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import datetime
import json
import math
import os
import re
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from bench import plot
from bench.lateness import Accounting, Occurrence, Summary, account
from bench.probes import WRITE_VERBS, ApiServerMetrics, ProcessSampler, RequestKey, Usage, label, writes
from stan_controlplane import certs, cluster, processes
from stan_core import install, kube, models

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
UTC = datetime.UTC
SCHEDULE = "* * * * *"
DEADLINE_SECONDS = 300
"""startingDeadlineSeconds of both kinds; also the longest that stragglers are awaited after the last measured tick."""
QUIET_LEAD = 30.0
"""The first measured tick comes at least this long after the operator has seen every task."""
SCRAPE_LEAD = 5.0
"""Counters are read this long before each tick, so that each one-minute window holds one whole tick."""
IDLE_SPAN = 20.0
"""The idle figures cover this long before each window."""
PAGE = 500
POLL_SECONDS = 10.0
STABLE_POLLS = 6
RETRIES = 5
SCHEDULED_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
FIRED_TICK = re.compile(r"for tick (\S+) started")
LOG_NOISE = re.compile(r"\b[0-9a-f]{12,}\b|\d+(\.\d+)?")


@dataclasses.dataclass(frozen=True)
class Layout:
    """Which namespace holds which task: at most ``per_namespace`` tasks and as many CronJobs each.

    ``audit_workflows`` lists its whole namespace on every run, so a run's
    cost grows with the namespace; this bounds it.
    """

    tasks: int
    per_namespace: int
    history: int

    def namespace(self, index: int) -> str:
        return f"bench-{index // self.per_namespace:04d}"

    @property
    def namespaces(self) -> list[str]:
        return [self.namespace(first) for first in range(0, self.tasks, self.per_namespace)]

    def task_owners(self) -> list[str]:
        return [f"{self.namespace(index)}/task-{index:05d}" for index in range(self.tasks)]

    def cron_owners(self) -> list[str]:
        return [f"{self.namespace(index)}/cron-{index:05d}" for index in range(self.tasks)]

    def objects(self) -> Iterable[tuple[str, str, str, dict]]:
        """(group, version, plural, body) of every StanTask and CronJob, alternating, so both grow at one pace."""
        for index in range(self.tasks):
            namespace = self.namespace(index)
            yield (
                models.GROUP,
                models.VERSION,
                models.STAN_TASK.plural,
                {
                    "apiVersion": models.API_VERSION,
                    "kind": models.STAN_TASK.kind,
                    "metadata": {"name": f"task-{index:05d}", "namespace": namespace},
                    "spec": {
                        "name": f"bench task {index}",
                        "action": "audit_workflows",
                        "schedule": SCHEDULE,
                        "modelId": "bench",
                        "timeZone": "UTC",
                        "concurrencyPolicy": "Allow",
                        "startingDeadlineSeconds": DEADLINE_SECONDS,
                        "runHistoryLimit": self.history,
                    },
                },
            )
            # A suspended Job creates no Pods: the CronJob controller still makes one Job per tick, which is
            # what is compared, without N Pending Pods a minute loading the shared API server.
            yield (
                "batch",
                "v1",
                "cronjobs",
                {
                    "apiVersion": "batch/v1",
                    "kind": "CronJob",
                    "metadata": {"name": f"cron-{index:05d}", "namespace": namespace},
                    "spec": {
                        "schedule": SCHEDULE,
                        "timeZone": "UTC",
                        "concurrencyPolicy": "Allow",
                        "startingDeadlineSeconds": DEADLINE_SECONDS,
                        "jobTemplate": {
                            "spec": {
                                "suspend": True,
                                "template": {
                                    "spec": {
                                        "restartPolicy": "Never",
                                        "containers": [{"name": "noop", "image": "registry.invalid/noop:1"}],
                                    }
                                },
                            }
                        },
                    },
                },
            )


class Progress:
    """Prints how far a long step is, at most every few seconds."""

    def __init__(self, what: str, total: int, every: float = 5.0) -> None:
        self._what, self._total, self._every = what, total, every
        self._started = self._printed = time.monotonic()

    def show(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._printed >= self._every:
            self._printed = now
            print(f"    {self._what}: {done}/{self._total} after {now - self._started:.0f}s", flush=True)


def _parse_time(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value)


def _late(moment: str, tick: datetime.datetime) -> float:
    return (_parse_time(moment) - tick).total_seconds()


async def _retrying(call: Callable[[], Awaitable[object]]) -> None:
    """A create that may meet an overloaded API server: retried on 429 and 5xx, a bounded number of times."""
    for attempt in range(RETRIES):
        try:
            await call()
            return
        except ApiException as error:
            if (error.status != 429 and error.status < 500) or attempt == RETRIES - 1:
                raise
            await asyncio.sleep(0.5 * 2**attempt)


async def create_all(api: client.ApiClient, layout: Layout, parallel: int) -> float:
    """Create the namespaces, then every task and CronJob with at most ``parallel`` requests in flight."""
    core = client.CoreV1Api(api)
    for namespace in layout.namespaces:
        await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    objects = client.CustomObjectsApi(api)
    pending = iter(layout.objects())
    progress = Progress("created", 2 * layout.tasks)
    created = 0
    started = time.monotonic()

    async def worker() -> None:
        nonlocal created
        for group, version, plural, body in pending:  # workers share the iterator: each takes the next object
            namespace = body["metadata"]["namespace"]
            await _retrying(
                lambda g=group, v=version, n=namespace, p=plural, b=body: objects.create_namespaced_custom_object(
                    g, v, n, p, b
                )
            )
            created += 1
            progress.show(created)

    await asyncio.gather(*(worker() for _ in range(parallel)))
    progress.show(created, force=True)
    return time.monotonic() - started


async def list_all(
    api: client.ApiClient, group: str, version: str, plural: str, field_selector: str | None = None
) -> AsyncIterator[dict]:
    """Every object of a kind in the cluster, a page at a time."""
    objects = client.CustomObjectsApi(api)
    token: str | None = None
    while True:
        page = await objects.list_cluster_custom_object(
            group, version, plural, limit=PAGE, _continue=token, field_selector=field_selector
        )
        for item in page["items"]:
            yield item
        token = page["metadata"].get("continue")
        if not token:
            return


def list_tasks(api: client.ApiClient) -> AsyncIterator[dict]:
    return list_all(api, models.GROUP, models.VERSION, models.STAN_TASK.plural)


def _owner(metadata: dict) -> str:
    return f"{metadata['namespace']}/{metadata['name']}"


async def wait_scheduled(api: client.ApiClient, layout: Layout, timeout: float) -> float:
    """Wait until the operator has taken in every task (a nextRunAt for its current generation); return when."""
    progress = Progress("scheduled by the operator", layout.tasks)
    deadline = time.monotonic() + timeout
    while True:
        scheduled = 0
        async for body in list_tasks(api):
            status = body.get("status") or {}
            if status.get("nextRunAt") and status.get("observedGeneration") == body["metadata"].get("generation"):
                scheduled += 1
        progress.show(scheduled, force=True)
        if scheduled == layout.tasks:
            return time.time()
        if time.monotonic() > deadline:
            raise TimeoutError(f"the operator scheduled {scheduled} of {layout.tasks} tasks in {timeout:.0f}s")
        await asyncio.sleep(POLL_SECONDS)


@dataclasses.dataclass
class Observed:
    """What the cluster holds about the measured ticks."""

    stan_started: Accounting
    stan_finished: Accounting
    stan_results: collections.Counter[str]
    cron: Accounting

    @property
    def complete(self) -> bool:
        return self.stan_finished.missed == 0 and self.cron.missed == 0


async def observe(api: client.ApiClient, layout: Layout, ticks: list[datetime.datetime]) -> Observed:
    measured = set(ticks)
    started, finished = [], []
    results: collections.Counter[str] = collections.Counter()
    async for body in list_tasks(api):
        owner = _owner(body["metadata"])
        for run in (body.get("status") or {}).get("recentRuns") or []:
            tick = _parse_time(run["scheduledAt"])
            if tick in measured:
                results[run["result"]] += 1
            if run.get("startedAt"):
                started.append(Occurrence(owner, tick, _late(run["startedAt"], tick)))
            if run.get("finishedAt"):
                finished.append(Occurrence(owner, tick, _late(run["finishedAt"], tick)))
    jobs = []
    async for body in list_all(api, "batch", "v1", "jobs"):
        metadata = body["metadata"]
        scheduled = (metadata.get("annotations") or {}).get(SCHEDULED_ANNOTATION)
        parents = [ref["name"] for ref in metadata.get("ownerReferences") or [] if ref["kind"] == "CronJob"]
        if scheduled and parents:
            tick = _parse_time(scheduled)
            jobs.append(
                Occurrence(f"{metadata['namespace']}/{parents[0]}", tick, _late(metadata["creationTimestamp"], tick))
            )
    tasks = layout.task_owners()
    return Observed(
        stan_started=account(tasks, started, ticks),
        stan_finished=account(tasks, finished, ticks),
        stan_results=results,
        cron=account(layout.cron_owners(), jobs, ticks),
    )


async def claim_events(api: client.ApiClient, layout: Layout, ticks: list[datetime.datetime]) -> Accounting:
    """The Event posted once a run's claim is stored (``Fired``, or ``Succeeded``/``Failed`` when the run had
    ended by then), stamped by the API server's clock: when the run's record reached the cluster."""
    occurrences = []
    async for event in list_all(
        api, "events.k8s.io", "v1", "events", field_selector=f"regarding.kind={models.STAN_TASK.kind}"
    ):
        match = FIRED_TICK.search(event.get("note") or "")
        if match:
            tick = _parse_time(match.group(1))
            occurrences.append(
                Occurrence(_owner(event["regarding"]), tick, _late(event["metadata"]["creationTimestamp"], tick))
            )
    return account(layout.task_owners(), occurrences, ticks)


async def collect(api: client.ApiClient, layout: Layout, ticks: list[datetime.datetime], deadline: float) -> Observed:
    """``observe`` until every measured run has finished and every Job exists, or nothing changes any more.

    The CronJob controller never goes back for a tick it passed over, so
    counts that stood still for ``STABLE_POLLS`` polls are final.
    """
    observed = await observe(api, layout, ticks)
    stable = 0
    while not observed.complete and stable < STABLE_POLLS and time.time() < deadline:
        print(
            f"    incomplete: {observed.stan_finished.missed} Stan runs unfinished, "
            f"{observed.cron.missed} CronJob Jobs missing",
            flush=True,
        )
        await asyncio.sleep(POLL_SECONDS)
        previous, observed = observed, await observe(api, layout, ticks)
        unchanged = (previous.stan_finished.missed, previous.cron.missed) == (
            observed.stan_finished.missed,
            observed.cron.missed,
        )
        stable = stable + 1 if unchanged else 0
    return observed


class Operator:
    """``stan operator`` as a child process, watching the whole cluster, its log in the state directory."""

    def __init__(self, state_dir: Path, kubeconfig: Path) -> None:
        self.log_path = state_dir / "logs" / "operator.log"
        self._liveness = f"http://127.0.0.1:{processes.free_port()}/healthz"
        command = [sys.executable, "-m", "stan_cli", "operator", "--no-webhook", "--liveness", self._liveness]
        with self.log_path.open("wb") as log:
            self.process = processes.spawn(command, output=log, env={**os.environ, "KUBECONFIG": str(kubeconfig)})

    def wait_alive(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self._liveness, timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the operator did not come alive (exit code {self.process.poll()}); see {self.log_path}")

    def log_findings(self, most: int = 10) -> dict:
        """Warnings, errors and tracebacks in the log, alike messages counted together (numbers and ids blanked)."""
        levels: collections.Counter[str] = collections.Counter()
        messages: collections.Counter[str] = collections.Counter()
        text = self.log_path.read_text(errors="replace")
        for line in text.splitlines():
            parts = line.split(" ", 3)
            level = parts[2] if len(parts) == 4 and parts[2] in ("WARNING", "ERROR", "CRITICAL") else None
            if line.startswith("Traceback"):
                level = "TRACEBACK"
            if level:
                levels[level] += 1
                messages[LOG_NOISE.sub("#", f"{level} {parts[-1] if level != 'TRACEBACK' else line}")[:200]] += 1
        return {"levels": dict(levels), "not_claimed": text.count(" not claimed "), "top": messages.most_common(most)}


async def _sleep_until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.time()))


def _minute_after(moment: float) -> float:
    return math.ceil(moment / 60.0) * 60.0


def _fmt(value: float | None, unit: str = "s") -> str:
    return "n/a" if value is None else f"{value:.3f}{unit}"


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return None if numerator is None or not denominator else numerator / denominator


async def measure(args: argparse.Namespace, plane: cluster.ControlPlane, operator: Operator) -> dict:
    layout = Layout(tasks=args.tasks, per_namespace=args.per_namespace, history=min(100, args.ticks + 5))
    metrics = ApiServerMetrics(plane.server, certs.Pki(plane.state_dir / "pki"))
    sampler = ProcessSampler(
        {"operator": operator.process.pid, **{name: process.pid for name, process in plane.processes.items()}}
    )
    sampler.start()
    began = time.time()
    api = await kube.api_client()
    try:
        async with api:
            print(
                f"==> creating {layout.tasks} StanTasks and {layout.tasks} CronJobs in {len(layout.namespaces)} "
                f"namespaces, {args.parallel} requests in flight",
                flush=True,
            )
            create_seconds = await create_all(api, layout, args.parallel)
            print("==> waiting for the operator to schedule every task", flush=True)
            ready = await wait_scheduled(api, layout, timeout=max(300.0, layout.tasks * 0.2))
            first = _minute_after(ready + QUIET_LEAD)
            boundaries = [first + 60.0 * index for index in range(args.ticks + 1)]
            ticks = [datetime.datetime.fromtimestamp(moment, UTC) for moment in boundaries[:-1]]
            scrapes: list[collections.Counter[RequestKey]] = []
            for index, boundary in enumerate(boundaries):
                await _sleep_until(boundary - SCRAPE_LEAD)
                scrapes.append(await asyncio.to_thread(metrics.requests))
                if index < args.ticks:
                    print(f"==> measured tick {index + 1}/{args.ticks} at {ticks[index]:%H:%M:%S}", flush=True)
            print("==> collecting runs and Jobs (waiting for stragglers if any)", flush=True)
            observed = await collect(api, layout, ticks, deadline=boundaries[-2] + DEADLINE_SECONDS)
            recorded = await claim_events(api, layout, ticks)
    finally:
        sampler.stop()
    windows = [scrapes[index + 1] - scrapes[index] for index in range(args.ticks)]

    def usage(name: str) -> dict:
        return {
            "idle": [
                Usage.of(sampler.window(name, moment - SCRAPE_LEAD - IDLE_SPAN, moment - SCRAPE_LEAD))
                for moment in boundaries[:-1]
            ],
            "tick": [
                Usage.of(sampler.window(name, moment - SCRAPE_LEAD, moment + 60.0 - SCRAPE_LEAD))
                for moment in boundaries[:-1]
            ],
        }

    kinds = sorted({key for window in windows for key in window if key[0] in WRITE_VERBS})
    stan, cron = observed.stan_started.summary, observed.cron.summary
    result = {
        "parameters": {
            "tasks": layout.tasks,
            "cronjobs": layout.tasks,
            "ticks": args.ticks,
            "per_namespace": layout.per_namespace,
            "namespaces": len(layout.namespaces),
            "parallel": args.parallel,
            "run_history_limit": layout.history,
            "schedule": SCHEDULE,
            "starting_deadline_seconds": DEADLINE_SECONDS,
            "action": "audit_workflows",
            "operator_watch": "cluster-wide",
        },
        "environment": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()},
        "timings": {
            "create_seconds": create_seconds,
            "create_per_second": 2 * layout.tasks / create_seconds,
            "scheduled_after_seconds": ready - began,
            "wall_seconds": time.time() - began,
        },
        "measured_ticks": [tick.isoformat() for tick in ticks],
        "resolution_note": "CronJob Job and claim Event lateness come from metadata.creationTimestamp, which has "
        "1 s resolution (truncated): each value is up to 1 s lower than the true one.",
        "stan": {
            "started": observed.stan_started,
            "finished": observed.stan_finished,
            "claim_event": recorded,
            "results": dict(observed.stan_results),
        },
        "cronjob": {"job_created": observed.cron},
        "ratio_p99": {
            "stan_started_over_cronjob": _ratio(stan.p99, cron.p99),
            "stan_claim_event_over_cronjob": _ratio(recorded.summary.p99, cron.p99),
        },
        "usage": {name: usage(name) for name in sampler.samples},
        "api_writes_per_tick": [
            {"total": writes(window), "by_request": {label(key): int(window[key]) for key in kinds if window[key]}}
            for window in windows
        ],
        "api_lists_per_tick": [
            {label(key): int(count) for key, count in window.items() if key[0] == "LIST" and count}
            for window in windows
        ],
        "operator_log": operator.log_findings(),
        "samples": {
            name: [(sample.at, sample.cpu, sample.rss) for sample in samples]
            for name, samples in sampler.samples.items()
        },
    }
    mean_writes = {label(key): sum(window[key] for window in windows) / len(windows) for key in kinds}
    plot.draw(
        RESULTS / f"ticks-N{layout.tasks}.png",
        f"{layout.tasks} StanTasks and {layout.tasks} CronJobs on '{SCHEDULE}', {args.ticks} measured ticks",
        {
            "Stan startedAt": observed.stan_started.lateness,
            "Stan finishedAt": observed.stan_finished.lateness,
            "Stan claim event": recorded.lateness,
            "CronJob Job created": observed.cron.lateness,
        },
        {name: samples for name, samples in sampler.samples.items() if name != "etcd"},
        boundaries[:-1],
        mean_writes,
    )
    return result


def _jsonable(value: object) -> object:
    if isinstance(value, Accounting):
        return {
            "summary": value.summary,
            "missed": value.missed,
            "duplicates": value.duplicates,
            "per_tick": value.per_tick,
        }
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def print_summary(result: dict) -> None:
    print(f"\n==> {result['parameters']['tasks']} tasks, ticks {', '.join(result['measured_ticks'])}")
    print(f"{'':26}{'runs':>7}{'p50':>10}{'p99':>10}{'max':>10}{'missed':>8}{'dup':>6}")
    rows = [
        ("Stan startedAt", result["stan"]["started"]),
        ("Stan finishedAt", result["stan"]["finished"]),
        ("Stan claim event (1 s)", result["stan"]["claim_event"]),
        ("CronJob Job created (1 s)", result["cronjob"]["job_created"]),
    ]
    for name, accounting in rows:
        summary: Summary = accounting.summary
        print(
            f"{name:26}{summary.count:>7}{_fmt(summary.p50):>10}{_fmt(summary.p99):>10}{_fmt(summary.max):>10}"
            f"{accounting.missed:>8}{accounting.duplicates:>6}"
        )
    print(result["resolution_note"])
    ratios = result["ratio_p99"]
    print(
        f"p99 ratio: Stan startedAt / CronJob = {_fmt(ratios['stan_started_over_cronjob'], '')}, "
        f"Stan claim event / CronJob = {_fmt(ratios['stan_claim_event_over_cronjob'], '')}"
    )
    print(f"Stan run results in the measured ticks: {result['stan']['results']}")
    for name in ("operator", "controller-manager", "apiserver"):
        usage = result["usage"][name]
        for phase in ("idle", "tick"):
            spans = [span for span in usage[phase] if span is not None]
            described = "; ".join(
                f"{span.cpu_seconds:.2f} CPU s ({span.cpu_cores:.2f} cores), "
                f"RSS mean {span.rss_mean_mib:.0f} max {span.rss_max_mib:.0f} MiB"
                for span in spans
            )
            print(f"{name:19} {phase:4} {described}")
    print("API writes per tick window: " + ", ".join(str(window["total"]) for window in result["api_writes_per_tick"]))
    for request, count in sorted(result["api_writes_per_tick"][-1]["by_request"].items(), key=lambda kv: -kv[1]):
        print(f"    {request:40}{count:>8}")
    findings = result["operator_log"]
    print(f"operator log: {findings['levels'] or 'no warnings or errors'}, {findings['not_claimed']} ticks not claimed")
    for message, count in findings["top"]:
        print(f"    {count:>6}x {message}")


async def run(args: argparse.Namespace) -> dict:
    state_dir = (ROOT / args.state_dir).resolve()
    plane = cluster.start(state_dir, fresh=True)
    os.environ["KUBECONFIG"] = str(plane.kubeconfig)
    operator: Operator | None = None
    try:
        await install.apply_crds_to_current_cluster()
        operator = Operator(state_dir, plane.kubeconfig)
        operator.wait_alive()
        print(f"==> operator running (pid {operator.process.pid}, log {operator.log_path})", flush=True)
        return await measure(args, plane, operator)
    finally:
        if operator is not None:
            processes.stop(operator.process)
        plane.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ticks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, required=True, help="N: StanTasks, and as many CronJobs")
    parser.add_argument(
        "--ticks", type=int, default=3, choices=range(1, 96), metavar="1..95", help="measured minute ticks (default 3)"
    )
    parser.add_argument("--per-namespace", type=int, default=100, help="tasks per namespace (default 100)")
    parser.add_argument("--parallel", type=int, default=16, help="create requests in flight (default 16)")
    parser.add_argument("--state-dir", default=".stan/bench", help="control-plane state (default .stan/bench)")
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(run(args))
    path = RESULTS / f"ticks-N{args.tasks}.json"
    path.write_text(json.dumps(result, indent=2, default=_jsonable) + "\n")
    print_summary(result)
    print(f"\n==> wrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
