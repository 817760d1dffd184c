"""What the benchmark reads off the machine: CPU and memory of processes, and the API server's request counters.

Both are read from outside the processes (``/proc`` and ``/metrics``), so
that measuring changes nothing in the operator or the control plane.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import os
import re
import ssl
import threading
import time
import urllib.request
from pathlib import Path

from bench.lateness import percentile
from stan_controlplane import certs

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass(frozen=True)
class Sample:
    at: float
    """Unix time."""
    cpu: float
    """User plus system CPU seconds since the process started."""
    rss: int
    """Resident memory, bytes."""


def read_process(pid: int) -> Sample:
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the command name, which is in parentheses and may hold spaces; utime and stime are fields 14, 15.
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    rss_kib = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    return Sample(at=time.time(), cpu=cpu, rss=rss_kib * 1024)


class ProcessSampler:
    """Samples processes once every ``interval`` seconds on a thread of its own, so a busy event loop cannot skew it."""

    def __init__(self, pids: dict[str, int], interval: float = 1.0) -> None:
        self.samples: dict[str, list[Sample]] = {name: [] for name in pids}
        self._pids = pids
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="process-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stopped.is_set():
            for name, pid in self._pids.items():
                # A process that ended is noticed by the benchmark on its own.
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    self.samples[name].append(read_process(pid))
            self._stopped.wait(self._interval)

    def window(self, name: str, start: float, end: float) -> list[Sample]:
        return [sample for sample in self.samples[name] if start <= sample.at < end]


@dataclasses.dataclass(frozen=True)
class Usage:
    """A process over a stretch of time."""

    cpu_seconds: float
    cpu_cores: float
    rss_mean_mib: float
    rss_max_mib: float

    @classmethod
    def of(cls, samples: list[Sample]) -> Usage | None:
        if len(samples) < 2:
            return None
        first, last = samples[0], samples[-1]
        rss = [sample.rss / 2**20 for sample in samples]
        return cls(
            cpu_seconds=last.cpu - first.cpu,
            cpu_cores=(last.cpu - first.cpu) / (last.at - first.at),
            rss_mean_mib=sum(rss) / len(rss),
            rss_max_mib=max(rss),
        )


WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
RequestKey = tuple[str, str, str]
"""(verb, resource, subresource) of ``apiserver_request_total``."""
_LABEL = re.compile(r'(\w+)="([^"]*)"')


class ApiServerMetrics:
    """Scrapes ``apiserver_request_total`` with the admin's client certificate of a local control plane."""

    def __init__(self, server: str, pki: certs.Pki) -> None:
        self._url = f"{server}/metrics"
        self._context = ssl.create_default_context(cafile=str(pki.ca_cert))
        self._context.load_cert_chain(str(pki.cert("admin")), str(pki.key("admin")))

    def requests(self) -> collections.Counter[RequestKey]:
        """Requests served so far, by verb, resource and subresource."""
        return self.snapshot()[1]

    def snapshot(self) -> tuple[float, collections.Counter[RequestKey]]:
        """``requests``, and about when the API server read its counters: midway between sending the request
        and its headers' arrival, as the counters are gathered before the first byte is sent. Reading the
        1.7 MB body, on a busy machine, may take much longer; that time is left out."""
        counts: collections.Counter[RequestKey] = collections.Counter()
        sent = time.time()
        with urllib.request.urlopen(self._url, context=self._context, timeout=30) as response:
            at = (sent + time.time()) / 2
            body = response.read()
        for raw in body.split(b"\n"):  # a quarter of the CPU of reading line by line
            if raw.startswith(b"apiserver_request_total{"):
                labels_text, value = raw.decode().rsplit("}", 1)
                labels = dict(_LABEL.findall(labels_text))
                counts[labels.get("verb", ""), labels.get("resource", ""), labels.get("subresource", "")] += float(
                    value
                )
        return at, counts


def writes(requests: collections.Counter[RequestKey]) -> int:
    return int(sum(count for (verb, _, _), count in requests.items() if verb in WRITE_VERBS))


def label(key: RequestKey) -> str:
    verb, resource, subresource = key
    return f"{verb} {resource}/{subresource}" if subresource else f"{verb} {resource}"


STAN_RESOURCES = frozenset({"stantasks", "events"})
"""What Stan writes: its tasks (the status subresource, in practice) and Events. Events count from every client."""


@dataclasses.dataclass(frozen=True)
class WriteSample:
    at: float
    """Unix time the counters were read (``ApiServerMetrics.snapshot``)."""
    writes: int
    """Writes served so far, all clients."""
    stan_writes: int
    """Of which to ``STAN_RESOURCES``."""


class WriteSampler:
    """Reads the API server's write counters once every ``interval`` seconds on a thread of its own, for
    writes per second; a scrape that fails or comes late only widens the interval it ends."""

    def __init__(self, metrics: ApiServerMetrics, interval: float = 1.0) -> None:
        self.samples: list[WriteSample] = []
        self.failures = 0
        self._metrics = metrics
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="write-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.ident is not None:
            self._thread.join()

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stopped.is_set():
            try:
                at, counts = self._metrics.snapshot()
            except OSError:
                self.failures += 1
            else:
                stan = collections.Counter({key: n for key, n in counts.items() if key[1] in STAN_RESOURCES})
                self.samples.append(WriteSample(at, writes(counts), writes(stan)))
            due = max(due + self._interval, time.monotonic())
            self._stopped.wait(due - time.monotonic())

    def window(self, start: float, end: float) -> list[WriteSample]:
        return [sample for sample in self.samples if start <= sample.at < end]


@dataclasses.dataclass(frozen=True)
class WriteRates:
    """Writes per second over a stretch of time, from consecutive samples (about 1 s apart)."""

    intervals: int
    peak: float | None
    p50: float | None
    stan_peak: float | None
    stan_p50: float | None

    @classmethod
    def of(cls, samples: list[WriteSample]) -> WriteRates:
        pairs = [(a, b) for a, b in itertools.pairwise(samples) if b.at > a.at]
        total = sorted((b.writes - a.writes) / (b.at - a.at) for a, b in pairs)
        stan = sorted((b.stan_writes - a.stan_writes) / (b.at - a.at) for a, b in pairs)
        if not pairs:
            return cls(0, None, None, None, None)
        return cls(len(pairs), total[-1], percentile(total, 0.5), stan[-1], percentile(stan, 0.5))
