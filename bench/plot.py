"""The benchmarks' figures: lateness side by side, what the operator spends over time, facade latency.

One PNG with four panels, so that a run can be judged at a glance: the
lateness CDFs (Stan against CronJob), the operator's memory and the CPU of the
operator and the controller manager over the run with the measured ticks
marked, and the API server's writes per tick by resource.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: the benchmark only writes files
import itertools

import matplotlib.pyplot as plt

from bench.probes import Sample


def draw(
    path: Path,
    title: str,
    lateness: dict[str, Sequence[float]],
    series: dict[str, list[Sample]],
    ticks: Sequence[float],
    writes: dict[str, float],
) -> None:
    """``ticks`` are Unix times; ``writes`` are the mean writes per tick by request kind."""
    figure, ((cdf, memory), (cpu, requests)) = plt.subplots(2, 2, figsize=(14, 9))
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
    for axis in (memory, cpu):
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
