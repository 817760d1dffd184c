"""Tick lateness at scale: Stan next to batch/v1 CronJob on the same control plane, and what the operator costs.

Stan fires every task from one heap in one Python process, where Kubernetes
has the CronJob controller; this measures whether that holds up when N tasks
and N CronJobs share the same minute tick (the worst case: every tick is a
thundering herd), and what the operator spends in memory, CPU and API writes
to do it. One run starts its own control plane and operator, so nothing else
shares the API server but the person's other work on the machine.

    .venv/bin/python -m bench.ticks --tasks 1000 [--ticks 3] [--cronjob-full-speed | --without-cronjobs]
        [--jitter-seconds S]

writes ``bench/results/ticks-N<N>[-nocron][-fullspeed][-jitter<S>].json`` and
``.png`` and prints a summary; bench/README.md says what each figure means.
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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from bench import plot
from bench.lateness import Accounting, Occurrence, Summary, account
from bench.probes import (
    STAN_RESOURCES,
    WRITE_VERBS,
    ApiServerMetrics,
    ProcessSampler,
    RequestKey,
    Usage,
    WriteRates,
    WriteSampler,
    label,
    writes,
)
from bench.records import RecordWatch
from stan_controlplane import certs, cluster, processes
from stan_core import install, kube, models, schedule

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
UTC = datetime.UTC
SCHEDULE = "* * * * *"
DEFAULT_TICKS = 3
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
FULL_SPEED_FLAGS = (
    "--kube-api-qps=500",
    "--kube-api-burst=1000",
    "--concurrent-cron-job-syncs=20",
    "--concurrent-job-syncs=20",
)
"""kube-controller-manager's client limits and workers as managed clusters raise them (upstream: 20 qps, burst 30,
5 and 5 workers), for ``--cronjob-full-speed``."""
MAX_JITTER = 55
"""So that each tick's runs, jittered, stay in the one-minute window that holds the tick."""
SCHEDULED_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
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
    cronjobs: bool = True
    """False: no CronJobs at all, only StanTasks."""
    jitter_seconds: int = 0
    """``spec.jitterSeconds`` of every task."""

    @property
    def objects_count(self) -> int:
        return self.tasks * (2 if self.cronjobs else 1)

    def namespace(self, index: int) -> str:
        return f"bench-{index // self.per_namespace:04d}"

    @property
    def namespaces(self) -> list[str]:
        return [self.namespace(first) for first in range(0, self.tasks, self.per_namespace)]

    def task_owners(self) -> list[str]:
        return [f"{self.namespace(index)}/task-{index:05d}" for index in range(self.tasks)]

    def cron_owners(self) -> list[str]:
        if not self.cronjobs:
            return []
        return [f"{self.namespace(index)}/cron-{index:05d}" for index in range(self.tasks)]

    def jitter(self, uid: str, tick: datetime.datetime) -> float:
        """Seconds that the task of ``uid`` runs ``tick`` after it: its due time is the tick plus these."""
        return schedule.jitter(uid, tick, self.jitter_seconds).total_seconds()

    def objects(self) -> Iterable[tuple[str, str, str, dict]]:
        """(group, version, plural, body) of every StanTask and CronJob, alternating, so both grow at one pace."""
        jitter = {"jitterSeconds": self.jitter_seconds} if self.jitter_seconds else {}
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
                        **jitter,
                    },
                },
            )
            if not self.cronjobs:
                continue
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
    progress = Progress("created", layout.objects_count)
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
    stan_started_due: Accounting
    """Lateness from the due time, the tick plus the task's jitter."""
    stan_finished: Accounting
    stan_results: collections.Counter[str]
    cron: Accounting
    uids: dict[str, str]
    stan_succeeded_per_tick: dict[str, int] = dataclasses.field(default_factory=dict)
    """Succeeded runs of each measured tick, by its ISO time."""
    """Each task's metadata.uid by namespace/name, which its jitter derives from."""

    @property
    def complete(self) -> bool:
        return self.stan_finished.missed == 0 and self.cron.missed == 0


async def observe(
    api: client.ApiClient, layout: Layout, ticks: list[datetime.datetime], watched: RecordWatch
) -> Observed:
    """Every run of the measured ticks: those the tasks list now, and those the watch saw that a short run
    history has pruned since."""
    measured = set(ticks)
    started, started_due, finished = [], [], []
    results: collections.Counter[str] = collections.Counter()
    succeeded: collections.Counter[str] = collections.Counter()
    uids: dict[str, str] = {}
    runs = dict(watched.runs)
    async for body in list_tasks(api):
        owner = _owner(body["metadata"])
        uids[owner] = body["metadata"]["uid"]
        for run in (body.get("status") or {}).get("recentRuns") or []:
            runs[owner, run["runId"]] = run
    for (owner, _), run in runs.items():
        tick = _parse_time(run["scheduledAt"])
        if tick in measured:
            results[run["result"]] += 1
            succeeded[tick.isoformat()] += run["result"] == "succeeded"
        if run.get("startedAt"):
            late = _late(run["startedAt"], tick)
            started.append(Occurrence(owner, tick, late))
            started_due.append(Occurrence(owner, tick, late - layout.jitter(uids.get(owner, ""), tick)))
        if run.get("finishedAt"):
            finished.append(Occurrence(owner, tick, _late(run["finishedAt"], tick)))
    jobs = await cronjob_jobs(api) if layout.cronjobs else []
    tasks = layout.task_owners()
    return Observed(
        stan_started=account(tasks, started, ticks),
        stan_started_due=account(tasks, started_due, ticks),
        stan_finished=account(tasks, finished, ticks),
        stan_results=results,
        stan_succeeded_per_tick=dict(succeeded),
        cron=account(layout.cron_owners(), jobs, ticks),
        uids=uids,
    )


async def cronjob_jobs(api: client.ApiClient) -> list[Occurrence]:
    """Every Job a CronJob made, as an occurrence of the tick it was made for."""
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
    return jobs


async def collect(
    api: client.ApiClient, layout: Layout, ticks: list[datetime.datetime], watched: RecordWatch, deadline: float
) -> Observed:
    """``observe`` until every measured run has finished and every Job exists, or nothing changes any more.

    The CronJob controller never goes back for a tick it passed over, so
    counts that stood still for ``STABLE_POLLS`` polls are final.
    """
    observed = await observe(api, layout, ticks, watched)
    stable = 0
    while not observed.complete and stable < STABLE_POLLS and time.time() < deadline:
        print(
            f"    incomplete: {observed.stan_finished.missed} Stan runs unfinished, "
            f"{observed.cron.missed} CronJob Jobs missing",
            flush=True,
        )
        await asyncio.sleep(POLL_SECONDS)
        previous, observed = observed, await observe(api, layout, ticks, watched)
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


def result_name(args: argparse.Namespace) -> str:
    """``ticks-N<N>``, and what sets the run apart, so that runs of one N with other flags keep files of their own."""
    name = f"ticks-N{args.tasks}"
    if args.without_cronjobs:
        name += "-nocron"
    if args.cronjob_full_speed:
        name += "-fullspeed"
    if args.jitter_seconds:
        name += f"-jitter{args.jitter_seconds}"
    if not args.write_rates:
        name += "-norates"
    if args.ticks != DEFAULT_TICKS:
        name += f"-ticks{args.ticks}"
    if args.run_history_limit:
        name += f"-history{args.run_history_limit}"
    return name


def _describe(layout: Layout, args: argparse.Namespace) -> tuple[str, str]:
    """What is created, e.g. "1000 StanTasks and 1000 CronJobs"; and the run's flags, e.g. " (jitter 30 s)"."""
    created = f"{layout.tasks} StanTasks and {f'{layout.tasks} CronJobs' if layout.cronjobs else 'no CronJobs'}"
    flags = [
        *(["CronJob at full speed: " + " ".join(FULL_SPEED_FLAGS)] if args.cronjob_full_speed else []),
        *([f"jitter {layout.jitter_seconds} s"] if layout.jitter_seconds else []),
    ]
    return created, f" ({'; '.join(flags)})" if flags else ""


async def measure(args: argparse.Namespace, plane: cluster.ControlPlane, operator: Operator) -> dict:
    layout = Layout(
        tasks=args.tasks,
        per_namespace=args.per_namespace,
        history=args.run_history_limit or min(100, args.ticks + 5),
        cronjobs=not args.without_cronjobs,
        jitter_seconds=args.jitter_seconds,
    )
    created, flags = _describe(layout, args)
    metrics = ApiServerMetrics(plane.server, certs.Pki(plane.state_dir / "pki"))
    sampler = ProcessSampler(
        {"operator": operator.process.pid, **{name: process.pid for name, process in plane.processes.items()}}
    )
    write_sampler = WriteSampler(metrics)
    sampler.start()
    began = time.time()
    api = await kube.api_client()
    try:
        async with api:
            print(
                f"==> creating {created} in {len(layout.namespaces)} namespaces, {args.parallel} requests in flight",
                flush=True,
            )
            create_seconds = await create_all(api, layout, args.parallel)
            print("==> waiting for the operator to schedule every task", flush=True)
            ready = await wait_scheduled(api, layout, timeout=max(300.0, layout.tasks * 0.2))
            first = _minute_after(ready + QUIET_LEAD)
            records = RecordWatch(api)
            records.start()
            boundaries = [first + 60.0 * index for index in range(args.ticks + 1)]
            ticks = [datetime.datetime.fromtimestamp(moment, UTC) for moment in boundaries[:-1]]
            if args.write_rates:
                write_sampler.start()
            scrapes: list[collections.Counter[RequestKey]] = []
            for index, boundary in enumerate(boundaries):
                await _sleep_until(boundary - SCRAPE_LEAD)
                scrapes.append(await asyncio.to_thread(metrics.requests))
                if index < args.ticks:
                    print(f"==> measured tick {index + 1}/{args.ticks} at {ticks[index]:%H:%M:%S}", flush=True)
            write_sampler.stop()
            print("==> collecting runs and Jobs (waiting for stragglers if any)", flush=True)
            observed = await collect(api, layout, ticks, records, deadline=boundaries[-2] + DEADLINE_SECONDS)
            await records.stop()
            owners = layout.task_owners()
            recorded = records.accounting(owners, ticks)
            recorded_due = records.accounting(
                owners, ticks, lambda owner, tick: layout.jitter(observed.uids.get(owner, ""), tick)
            )
    finally:
        write_sampler.stop()
        sampler.stop()
    windows = [scrapes[index + 1] - scrapes[index] for index in range(args.ticks)]
    write_rates = [
        WriteRates.of(write_sampler.window(moment - SCRAPE_LEAD, moment + 60.0 - SCRAPE_LEAD))
        for moment in boundaries[:-1]
    ]

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
    from_due = (
        {"started_from_due": observed.stan_started_due, "record_from_due": recorded_due}
        if layout.jitter_seconds
        else {}
    )
    result = {
        "parameters": {
            "tasks": layout.tasks,
            "cronjobs": layout.tasks if layout.cronjobs else 0,
            "ticks": args.ticks,
            "per_namespace": layout.per_namespace,
            "namespaces": len(layout.namespaces),
            "parallel": args.parallel,
            "run_history_limit": layout.history,
            "schedule": SCHEDULE,
            "starting_deadline_seconds": DEADLINE_SECONDS,
            "action": "audit_workflows",
            "operator_watch": "cluster-wide",
            "cronjob_full_speed": args.cronjob_full_speed,
            "controller_manager_flags": list(plane.controller_manager_flags),
            "jitter_seconds": layout.jitter_seconds,
            "write_rates": args.write_rates,
        },
        "environment": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()},
        "timings": {
            "create_seconds": create_seconds,
            "create_per_second": layout.objects_count / create_seconds,
            "scheduled_after_seconds": ready - began,
            "wall_seconds": time.time() - began,
        },
        "measured_ticks": [tick.isoformat() for tick in ticks],
        "resolution_note": "CronJob Job lateness comes from metadata.creationTimestamp, which has 1 s resolution "
        "(truncated): each value is up to 1 s lower than the true one. Stan's record is when a watch of the "
        "StanTasks first showed the run, on this machine's clock.",
        "stan": {
            "started": observed.stan_started,
            "finished": observed.stan_finished,
            "record": recorded,
            **from_due,
            "results": dict(observed.stan_results),
        },
        "cronjob": {"job_created": observed.cron} if layout.cronjobs else None,
        "ratio_p99": {
            "stan_started_over_cronjob": _ratio(stan.p99, cron.p99),
            "stan_record_over_cronjob": _ratio(recorded.summary.p99, cron.p99),
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
        "api_writes_per_second": write_rates,
        "api_write_samples": [(sample.at, sample.writes, sample.stan_writes) for sample in write_sampler.samples],
        "api_write_scrape_failures": write_sampler.failures,
        "operator_log": operator.log_findings(),
        "samples": {
            name: [(sample.at, sample.cpu, sample.rss) for sample in samples]
            for name, samples in sampler.samples.items()
        },
    }
    result["per_tick"] = per_tick(result, windows, observed.stan_succeeded_per_tick)
    mean_writes = {label(key): sum(window[key] for window in windows) / len(windows) for key in kinds}
    lateness: dict[str, Sequence[float]] = {
        "Stan startedAt": observed.stan_started.lateness,
        "Stan finishedAt": observed.stan_finished.lateness,
        "Stan record": recorded.lateness,
    }
    if layout.jitter_seconds:
        lateness["Stan startedAt from due"] = observed.stan_started_due.lateness
        lateness["Stan record from due"] = recorded_due.lateness
    if layout.cronjobs:
        lateness["CronJob Job created"] = observed.cron.lateness
    plot.steady(
        RESULTS / f"{result_name(args)}-per-tick.png", f"{created}{flags}: per measured tick", result["per_tick"]
    )
    plot.draw(
        RESULTS / f"{result_name(args)}.png",
        f"{created} on '{SCHEDULE}', {args.ticks} measured ticks{flags}",
        lateness,
        {name: samples for name, samples in sampler.samples.items() if name != "etcd"},
        boundaries[:-1],
        mean_writes,
        write_sampler.samples,
    )
    return result


def slope(values: Sequence[float | None]) -> float | None:
    """The least-squares slope of ``values`` over their index: how much they grow per tick."""
    points = [(index, value) for index, value in enumerate(values) if value is not None]
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def per_tick(result: dict, windows: list[collections.Counter[RequestKey]], succeeded: dict[str, int]) -> dict:
    """Each measured tick on its own, to tell a steady state from one falling behind: record lag, starts,
    the API server's writes (Stan's per successful run) and the operator's memory; and how the lag and the
    memory trend, the memory from the tick whose run fills every task's history (the run history limit's
    tick: a run or more may come before the first measured tick) on, with at least three such ticks."""
    stan = result["stan"]
    rows = []
    for index, tick in enumerate(result["measured_ticks"]):
        record: Summary = stan["record"].per_tick[tick]
        started: Summary = stan["started"].per_tick[tick]
        window = windows[index]
        stan_writes = sum(
            count for (verb, resource, _), count in window.items() if verb in WRITE_VERBS and resource in STAN_RESOURCES
        )
        memory = result["usage"]["operator"]["tick"][index]
        rows.append(
            {
                "tick": tick,
                "record_p50": record.p50,
                "record_p99": record.p99,
                "started_p99": started.p99,
                "succeeded": succeeded.get(tick, 0),
                "writes": writes(window),
                "stan_writes": int(stan_writes),
                "stan_writes_per_success": stan_writes / succeeded[tick] if succeeded.get(tick) else None,
                "by_request": {label(key): int(count) for key, count in window.items() if key[0] in WRITE_VERBS},
                "operator_rss_mean_mib": memory.rss_mean_mib if memory else None,
                "operator_rss_max_mib": memory.rss_max_mib if memory else None,
            }
        )
    full = rows[result["parameters"]["run_history_limit"] - 1 :]
    return {
        "ticks": rows,
        "record_p99_slope_s_per_tick": slope([row["record_p99"] for row in rows]),
        "operator_rss_slope_mib_per_tick_history_full": (
            slope([row["operator_rss_mean_mib"] for row in full]) if len(full) >= 3 else None
        ),
        "history_full_ticks": len(full),
    }


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


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}/s"


def print_summary(result: dict) -> None:
    print(f"\n==> {result['parameters']['tasks']} tasks, ticks {', '.join(result['measured_ticks'])}")
    stan = result["stan"]
    named = [
        ("Stan startedAt", stan["started"]),
        ("Stan startedAt from due", stan.get("started_from_due")),
        ("Stan finishedAt", stan["finished"]),
        ("Stan record", stan["record"]),
        ("Stan record from due", stan.get("record_from_due")),
    ]
    rows: list[tuple[str, Accounting | None]] = [(name, found) for name, found in named if found is not None]
    rows.append(("CronJob Job created (1 s)", result["cronjob"]["job_created"] if result["cronjob"] else None))
    width = max(26, *(len(name) + 1 for name, _ in rows))
    print(f"{'':{width}}{'runs':>7}{'p50':>10}{'p99':>10}{'max':>10}{'missed':>8}{'dup':>6}")
    for name, accounting in rows:
        if accounting is None:
            print(f"{name:{width}}{'n/a: no CronJobs in this run':>51}")
            continue
        summary: Summary = accounting.summary
        print(
            f"{name:{width}}{summary.count:>7}{_fmt(summary.p50):>10}{_fmt(summary.p99):>10}{_fmt(summary.max):>10}"
            f"{accounting.missed:>8}{accounting.duplicates:>6}"
        )
    print(result["resolution_note"])
    if "started_from_due" in stan:
        print(
            f"jitter {result['parameters']['jitter_seconds']} s: lateness from the tick includes each task's jitter; "
            "'from due' counts from the tick plus the jitter"
        )
    ratios = result["ratio_p99"]
    print(
        f"p99 ratio: Stan startedAt / CronJob = {_fmt(ratios['stan_started_over_cronjob'], '')}, "
        f"Stan record / CronJob = {_fmt(ratios['stan_record_over_cronjob'], '')}"
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
    rates: list[WriteRates] = result["api_writes_per_second"]
    print(
        "API writes per second in each tick window (1 s samples), peak / p50: "
        + ", ".join(f"{_rate(rate.peak)} / {_rate(rate.p50)}" for rate in rates)
        + "; of which stantasks and events: "
        + ", ".join(f"{_rate(rate.stan_peak)} / {_rate(rate.stan_p50)}" for rate in rates)
    )
    steady = result["per_tick"]
    print(
        f"{'per tick':20}{'record p50':>11}{'p99':>8}{'started p99':>12}{'succeeded':>10}{'writes':>8}"
        f"{'Stan/run':>9}{'RSS MiB':>9}"
    )
    for row in steady["ticks"]:
        print(
            f"{row['tick'][11:19]:20}{_fmt(row['record_p50']):>11}{_fmt(row['record_p99']):>8}"
            f"{_fmt(row['started_p99']):>12}{row['succeeded']:>10}{row['writes']:>8}"
            f"{_fmt(row['stan_writes_per_success'], ''):>9}{_fmt(row['operator_rss_mean_mib'], ''):>9}"
        )
    print(
        f"record p99 slope {_fmt(steady['record_p99_slope_s_per_tick'])} per tick; operator RSS slope over the "
        f"{steady['history_full_ticks']} ticks with full run history "
        f"{_fmt(steady['operator_rss_slope_mib_per_tick_history_full'], ' MiB')} per tick (needs 3)"
    )
    findings = result["operator_log"]
    print(f"operator log: {findings['levels'] or 'no warnings or errors'}, {findings['not_claimed']} ticks not claimed")
    for message, count in findings["top"]:
        print(f"    {count:>6}x {message}")


async def run(args: argparse.Namespace) -> dict:
    state_dir = (ROOT / args.state_dir).resolve()
    plane = cluster.start(
        state_dir, fresh=True, controller_manager_flags=FULL_SPEED_FLAGS if args.cronjob_full_speed else ()
    )
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
        "--ticks",
        type=int,
        default=DEFAULT_TICKS,
        choices=range(1, 96),
        metavar="1..95",
        help=f"measured minute ticks (default {DEFAULT_TICKS}; 10 or more to see a steady state)",
    )
    parser.add_argument("--per-namespace", type=int, default=100, help="tasks per namespace (default 100)")
    parser.add_argument("--parallel", type=int, default=16, help="create requests in flight (default 16)")
    parser.add_argument("--state-dir", default=".stan/bench", help="control-plane state (default .stan/bench)")
    parser.add_argument(
        "--run-history-limit",
        type=int,
        choices=range(1, 101),
        metavar="1..100",
        help="spec.runHistoryLimit of every StanTask (default: the measured ticks + 5, so none is pruned)",
    )
    cronjobs = parser.add_mutually_exclusive_group()
    cronjobs.add_argument(
        "--cronjob-full-speed",
        action="store_true",
        help="start kube-controller-manager with " + " ".join(FULL_SPEED_FLAGS) + " (default: upstream's limits)",
    )
    cronjobs.add_argument(
        "--without-cronjobs", action="store_true", help="create no CronJobs: StanTasks only, CronJob figures n/a"
    )
    parser.add_argument(
        "--jitter-seconds",
        type=int,
        default=0,
        choices=range(MAX_JITTER + 1),
        metavar=f"0..{MAX_JITTER}",
        help="spec.jitterSeconds of every StanTask (default 0)",
    )
    parser.add_argument(
        "--no-write-rates",
        dest="write_rates",
        action="store_false",
        help="do not read the API server's write counters every second (it costs the API server ~0.07 of a core)",
    )
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(run(args))
    path = RESULTS / f"{result_name(args)}.json"
    path.write_text(json.dumps(result, indent=2, default=_jsonable) + "\n")
    print_summary(result)
    print(f"\n==> wrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
