"""``stan run``: Stan on one machine, in the foreground.

It starts the local control plane, with a node as root (see
``stan_controlplane.node``), unless ``KUBECONFIG`` names a cluster,
installs the CRDs, then runs the operator and the REST facade as child
processes. Ctrl-C, SIGTERM, SIGHUP or losing the reader of its output (``make
run | tee run.log`` loses tee to the same Ctrl-C) stop the children, then the
control plane; if a child dies, everything stops, so a half-running Stan is
never left behind. Should ``stan run`` itself be killed, the kernel kills the
children (see ``stan_controlplane.processes``), and the next start cleans up
what outlives them (a node's containers, see ``stan_controlplane.host``).
"""

from __future__ import annotations

import asyncio
import os
import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from stan_controlplane import build, cluster, node, processes
from stan_core import install

STAGE_GRACE_PERIOD = 5.0
"""Stages stop in turn (operator and API, then the cluster's: kubelet, containerd, scheduler, controller
manager, API server, etcd), each within this; in practice each takes well under a second."""
_STOP_SIGNALS = {signal.SIGINT: 0, signal.SIGTERM: 128 + signal.SIGTERM, signal.SIGHUP: 128 + signal.SIGHUP}
"""The signals that stop Stan, with the exit code of each: Ctrl-C is how one stops Stan, not a failure."""
_OUTPUT_LOST = 128 + signal.SIGPIPE
"""The exit code when nobody reads Stan's output any more, as if SIGPIPE had ended it."""


class Stopped(BaseException):
    """Stan was asked to stop; a BaseException, as KeyboardInterrupt is, so no ``except Exception`` swallows it."""

    def __init__(self, reason: str, exit_code: int) -> None:
        super().__init__(reason)
        self.exit_code = exit_code


def _stop_on_signal(signum: int, _frame: FrameType | None) -> None:
    """Raise once: the cleanup the first signal starts must not be cut short by a second."""
    _ignore_stop_signals()
    stop_signal = signal.Signals(signum)
    raise Stopped(stop_signal.name, _STOP_SIGNALS[stop_signal])


def _ignore_stop_signals() -> None:
    for stop_signal in _STOP_SIGNALS:
        signal.signal(stop_signal, signal.SIG_IGN)


def _stop_on_signals() -> None:
    """A signal ignored by whoever started us (``nohup``) stays ignored."""
    for stop_signal in _STOP_SIGNALS:
        if signal.getsignal(stop_signal) is not signal.SIG_IGN:
            signal.signal(stop_signal, _stop_on_signal)


class OutputWatch:
    """Tells when the reader of our output went away: a pipe without reader, a hung-up terminal.

    Nothing Stan or its children print can be seen after that, so it stops
    rather than run on unseen. A regular file never reports either condition.
    It watches a duplicate of ``fd``, which stays the original output when
    ``_say`` puts /dev/null in its place.
    """

    def __init__(self, fd: int) -> None:
        self._poll = select.poll()
        self._poll.register(os.dup(fd), 0)  # poll always reports POLLERR and POLLHUP, whatever it is asked

    def wait_lost(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; True as soon as the output is lost."""
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in self._poll.poll(timeout * 1000))


def _say(text: str) -> None:
    """Print, if anyone still reads: a lost output must never cut the cleanup short."""
    try:
        print(text, flush=True)
    except OSError:  # EPIPE from a pipe without reader, EIO from a hung-up terminal
        # Python flushes stdout once more at exit; what it still holds goes nowhere rather than fail there.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _stan(*args: str) -> list[str]:
    return [sys.executable, "-m", "stan_cli", *args]


def _banner(api_port: int, metrics_port: int, kubeconfig: str) -> str:
    kubectl = shutil.which("kubectl") or str(build.binary_path("kubectl"))
    return "\n".join(
        [
            "",
            "Stan is running. Ctrl-C stops it.",
            f"  API:        http://127.0.0.1:{api_port}/api/v1/stan  (docs: http://127.0.0.1:{api_port}/docs)",
            f"  metrics:    http://127.0.0.1:{metrics_port}/metrics  (the operator's; the API's at /metrics)",
            f"  kubeconfig: {kubeconfig}",
            f"  kubectl:    KUBECONFIG={kubeconfig} {kubectl} get stantasks -A",
            f"  API key:    KUBECONFIG={kubeconfig} .venv/bin/stan apikey create --user you --scopes stan:execute",
            "",
        ]
    )


def _supervise(children: dict[str, subprocess.Popen[bytes]], output: OutputWatch) -> int:
    """Until a child exits or the output is lost; signals end it by raising Stopped."""
    while True:
        for name, child in children.items():
            if child.poll() is not None:
                _say(f"==> the {name} exited with {child.returncode}; stopping Stan")
                return 1
        if output.wait_lost(timeout=0.2):
            return _OUTPUT_LOST


def run(project_root: Path, api_port: int, metrics_port: int) -> int:
    _stop_on_signals()
    output = OutputWatch(sys.stdout.fileno())
    plane: cluster.ControlPlane | None = None
    children: dict[str, subprocess.Popen[bytes]] = {}
    try:
        if not os.environ.get("KUBECONFIG"):
            state_dir = Path(os.environ.get("STAN_HOME", project_root / ".stan"))
            plane = cluster.start(state_dir / "local", with_node=node.wanted())
            os.environ["KUBECONFIG"] = str(plane.kubeconfig)
        for name in asyncio.run(install.apply_crds_to_current_cluster()):
            _say(f"==> CRD {name} established")
        children["operator"] = processes.spawn(
            _stan(
                "operator",
                "--webhook-listen",
                "127.0.0.1",
                "--webhook-port",
                str(processes.free_port()),
                "--liveness",
                f"http://127.0.0.1:{processes.free_port()}/healthz",
                "--metrics-host",
                "127.0.0.1",
                "--metrics-port",
                str(metrics_port),
            )
        )
        children["api"] = processes.spawn(_stan("api", "--port", str(api_port)))
        _say(_banner(api_port, metrics_port, os.environ["KUBECONFIG"]))
        return _supervise(children, output)
    except Stopped as stopped:
        return stopped.exit_code
    finally:
        _ignore_stop_signals()
        _say("==> stopping Stan")
        processes.stop(*children.values(), timeout=STAGE_GRACE_PERIOD)
        if plane is not None:
            plane.stop(grace_period=STAGE_GRACE_PERIOD)
        _say("==> Stan stopped")
