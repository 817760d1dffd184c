"""The benchmarks' figures: lateness side by side, what the operator spends over time, facade latency.

One PNG with four panels, so that a run can be judged at a glance: the
lateness CDFs (Stan against CronJob), the operator's memory and the CPU of the
operator and the controller manager over the run with the measured ticks
marked, and the API server's writes per tick by resource; and a fifth, the
API server's writes per second around the measured ticks, when they were sampled.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: the benchmark only writes files
import itertools

import matplotlib.pyplot as plt

from bench.probes import Sample, WriteSample


def draw(
    path: Path,
    title: str,
    lateness: dict[str, Sequence[float]],
    series: dict[str, list[Sample]],
    ticks: Sequence[float],
    writes: dict[str, float],
    write_samples: Sequence[WriteSample] = (),
) -> None:
    """``ticks`` are Unix times; ``writes`` are the mean writes per tick by request kind; ``write_samples``, the
    API server's write counters about once a second, add a panel of writes per second below the four."""
    rates = list(itertools.pairwise(write_samples))
    figure = plt.figure(figsize=(14, 13 if rates else 9))
    grid = figure.add_gridspec(3 if rates else 2, 2, height_ratios=[1, 1, 0.8] if rates else [1, 1])
    cdf, memory = figure.add_subplot(grid[0, 0]), figure.add_subplot(grid[0, 1])
    cpu, requests = figure.add_subplot(grid[1, 0]), figure.add_subplot(grid[1, 1])
    figure.suptitle(title)

    _cdfs(cdf, lateness)
    cdf.set_xscale("symlog", linthresh=1.0, linscale=2.0)
    cdf.set_xlabel("seconds after the tick (linear below 1 s, log above)")
    cdf.set_ylabel("fraction of runs")
    cdf.set_title("Lateness CDF (CronJob and claim event: 1 s server resolution)")

    start = min((samples[0].at for samples in series.values() if samples), default=0.0)
    operator = series.get("operator", [])
    memory.plot([s.at - start for s in operator], [s.rss / 2**20 for s in operator], label="operator")
    memory.set_ylabel("resident memory (MiB)")
    memory.set_title("Operator memory (VmRSS)")
    cpu.set_ylabel("CPU (cores, 1 s samples)")
    cpu.set_title("CPU per process")
    for name, samples in series.items():
        pairs = list(itertools.pairwise(samples))
        cpu.plot(
            [b.at - start for _, b in pairs],
            [(b.cpu - a.cpu) / (b.at - a.at) for a, b in pairs],
            label=name,
            linewidth=0.8,
        )
    axes = [memory, cpu]
    if rates:
        per_second = figure.add_subplot(grid[2, :])
        for name, count in (("all clients", lambda s: s.writes), ("stantasks and events", lambda s: s.stan_writes)):
            per_second.plot(
                [b.at - start for _, b in rates],
                [(count(b) - count(a)) / (b.at - a.at) for a, b in rates],
                label=name,
                linewidth=0.8,
            )
        per_second.set_ylabel("writes per second")
        per_second.set_title("API server writes per second (POST, PUT, PATCH, DELETE; ~1 s samples)")
        axes.append(per_second)
    for axis in axes:
        for tick in ticks:
            axis.axvline(tick - start, color="grey", linestyle=":", linewidth=0.8)
        axis.set_xlabel("seconds since sampling began (dotted: measured ticks)")
        axis.legend(loc="upper left", fontsize="small")
        axis.grid(True, alpha=0.3)

    ranked = sorted(writes.items(), key=lambda item: item[1])
    requests.barh([name for name, _ in ranked], [count for _, count in ranked])
    requests.set_xlabel("requests per tick (mean over the measured ticks)")
    requests.set_title("API server writes per tick, by verb and resource (all clients)")
    requests.tick_params(axis="y", labelsize="small")

    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def draw_latencies(path: Path, title: str, latencies: dict[str, Sequence[float]]) -> None:
    """The facade benchmark's figure: one latency CDF per kind of request, in milliseconds."""
    figure, axis = plt.subplots(figsize=(9, 5.5))
    _cdfs(axis, {name: [1000 * value for value in values] for name, values in latencies.items()})
    axis.set_xscale("log")
    axis.set_xlabel("latency (ms, log)")
    axis.set_ylabel("fraction of requests")
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _cdfs(axis: plt.Axes, samples: dict[str, Sequence[float]]) -> None:
    for name, values in samples.items():
        ordered = sorted(values)
        if ordered:
            axis.step(
                ordered,
                [(index + 1) / len(ordered) for index in range(len(ordered))],
                where="post",
                label=f"{name} (n={len(ordered)})",
            )
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(loc="lower right", fontsize="small")


def steady(path: Path, title: str, per_tick: dict) -> None:
    """Record lag and starts per measured tick beside the operator's memory: a steady state is two flat lines."""
    rows = per_tick["ticks"]
    index = list(range(1, len(rows) + 1))
    figure, (lag, memory) = plt.subplots(1, 2, figsize=(13, 4.5))
    figure.suptitle(title)
    for key, name in (("record_p50", "record p50"), ("record_p99", "record p99"), ("started_p99", "started p99")):
        lag.plot(index, [row[key] for row in rows], marker="o", label=name)
    lag.set_xlabel("measured tick")
    lag.set_ylabel("seconds after the tick")
    lag.set_title("Lateness per tick")
    lag.legend()
    memory.plot(index, [row["operator_rss_mean_mib"] for row in rows], marker="o", label="mean")
    memory.plot(index, [row["operator_rss_max_mib"] for row in rows], marker=".", label="max")
    memory.set_xlabel("measured tick")
    memory.set_ylabel("MiB")
    memory.set_title("Operator resident memory per tick window")
    memory.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
