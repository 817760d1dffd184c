"""``stan run`` takes every process it started with it, however it ends.

Each case starts the real ``stan run`` with a control plane of its own, its
output going through a pipe to a reader as with ``make run | tee run.log``,
ends it one way, and looks for survivors among the processes it started. A
leftover kube-apiserver keeps its etcd's data and ports; a leftover facade
keeps the API port the next ``make run`` needs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from stan_controlplane import processes

from .conftest import ChildProcess

ORDERLY_STOP_LIMIT = 20.0
"""Operator and facade, then controller manager, API server and etcd, each stage with its grace period."""
KILLED_LIMIT = 3.0
"""Nothing stops in order when ``stan run`` is killed: its children get SIGKILL from the kernel."""
EXPECTED_CHILDREN = {"etcd", "kube-apiserver", "kube-controller-manager", "stan operator", "stan api"}


@dataclasses.dataclass(frozen=True)
class Descendant:
    """A process by pid and start time, so that a recycled pid is not taken for a survivor."""

    pid: int
    started: str
    name: str

    def running(self) -> bool:
        stat = _stat(self.pid)
        return stat is not None and stat.started == self.started and stat.state not in "ZX"


@dataclasses.dataclass(frozen=True)
class _Stat:
    state: str
    parent: int
    started: str


def _stat(pid: int) -> _Stat | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name, in parentheses, may hold spaces
    return _Stat(state=fields[0], parent=int(fields[1]), started=fields[19])


def _name(pid: int) -> str:
    """``etcd``, ``kube-apiserver``, ..., or ``stan operator`` for ``python -m stan_cli operator``."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_text(errors="replace").split("\0")
    except OSError:
        return "?"
    return f"stan {argv[3]}" if argv[1:3] == ["-m", "stan_cli"] else Path(argv[0]).name


def descendants(root: int) -> list[Descendant]:
    """By parent pid: each child has a session of its own, so no process group holds them all."""
    children: dict[int, list[int]] = {}
    stats: dict[int, _Stat] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            stats[int(entry.name)] = stat
            children.setdefault(stat.parent, []).append(int(entry.name))
    found: list[Descendant] = []
    pending = list(children.get(root, []))
    while pending:
        pid = pending.pop()
        found.append(Descendant(pid, stats[pid].started, _name(pid)))
        pending.extend(children.get(pid, []))
    return found


def _as_from_a_terminal() -> None:
    """The stop signals at their defaults, as a terminal's shell starts a command: a test run in the
    background of a shell without job control inherits SIGINT ignored, which ``stan run`` keeps ignored."""
    for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop_signal, signal.SIG_DFL)


class StanRun(ChildProcess):
    """``stan run`` with a state directory of its own, its output piped to a reader that writes the log."""

    what = "stan run"

    def __init__(self, home: Path) -> None:
        self.log_path = home / "stan-run.log"
        self.api_url = f"http://127.0.0.1:{processes.free_port()}"
        metrics_port = processes.free_port()
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        env = {name: value for name, value in os.environ.items() if name != "KUBECONFIG"}
        env["STAN_HOME"] = str(home)
        env["STAN_METRICS_PORT"] = str(metrics_port)
        with self.log_path.open("wb") as log:
            self.reader = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=log)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stan_cli", "run", "--api-port", self.api_url.rsplit(":", 1)[1]],
            stdin=subprocess.DEVNULL,
            stdout=self.reader.stdin,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_as_from_a_terminal,
        )
        self.reader.stdin.close()

    def kill_all(self, started: list[Descendant]) -> None:
        """Whatever a failed case left behind must not burden the next one."""
        leftovers = {*started, *(descendants(self.process.pid) if self.process.poll() is None else [])}
        self.process.kill()
        self.process.wait()
        self.close_output()
        for child in leftovers:
            if child.running():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)

    def close_output(self) -> None:
        """The reader dies, as tee does on the Ctrl-C meant for ``make run``."""
        self.reader.kill()
        self.reader.wait()


def _signal(signum: signal.Signals) -> Callable[[StanRun], None]:
    return lambda stan: os.kill(stan.process.pid, signum)


def _ctrl_c(stan: StanRun) -> None:
    """The terminal's Ctrl-C reaches ``stan run`` and the reader of its output alike.

    The reader goes second, so that ``stan run`` is stopping already when its
    output is lost: what it printed then used to cut its cleanup short.
    """
    os.kill(stan.process.pid, signal.SIGINT)
    stan.close_output()


@dataclasses.dataclass(frozen=True)
class Ending:
    """A way ``stan run`` ends, with the exit code it has once it has stopped everything itself.

    The exit code is what tells a cleanup run to its end from one cut short:
    the kernel kills the children of a dead ``stan run`` either way.
    """

    name: str
    end: Callable[[StanRun], None]
    exit_code: int
    limit: float


ENDINGS = [
    Ending("ctrl-c", _ctrl_c, 0, ORDERLY_STOP_LIMIT),
    Ending("sigterm", _signal(signal.SIGTERM), 128 + signal.SIGTERM, ORDERLY_STOP_LIMIT),
    Ending("sighup", _signal(signal.SIGHUP), 128 + signal.SIGHUP, ORDERLY_STOP_LIMIT),
    Ending("closed-output", StanRun.close_output, 128 + signal.SIGPIPE, ORDERLY_STOP_LIMIT),
    Ending("sigkill", _signal(signal.SIGKILL), -signal.SIGKILL, KILLED_LIMIT),
]


@pytest.mark.parametrize("ending", ENDINGS, ids=[ending.name for ending in ENDINGS])
def test_no_process_outlives_stan_run(ending: Ending, tmp_path: Path) -> None:
    stan = StanRun(tmp_path)
    started: list[Descendant] = []
    try:
        stan.wait_answering(f"{stan.api_url}/readyz")
        stan.wait_answering(stan.metrics_url)
        assert f"metrics:    {stan.metrics_url}" in stan.log_path.read_text(), "the banner shows the operator's metrics"
        started = descendants(stan.process.pid)
        missing = EXPECTED_CHILDREN - {child.name for child in started}
        assert not missing, f"stan run did not start {missing}: {started}"

        ended_at = time.monotonic()
        ending.end(stan)
        exit_code = stan.process.wait(timeout=ending.limit)
        survivors = started
        while survivors and time.monotonic() < ended_at + ending.limit:
            time.sleep(0.05)
            survivors = [child for child in survivors if child.running()]
        took = time.monotonic() - ended_at
    finally:
        stan.kill_all(started)

    assert not survivors, f"still running {ending.limit:.0f}s after {ending.name}: {survivors}\n{stan.log_tail()}"
    assert exit_code == ending.exit_code, (
        f"stan run exited with {exit_code} after {ending.name}, not "
        f"{ending.exit_code}: its cleanup failed\n{stan.log_tail()}"
    )
    print(f"{ending.name}: every process gone {took:.1f}s later")
