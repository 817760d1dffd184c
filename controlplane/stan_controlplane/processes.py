"""Child processes that never outlive their parent.

Each child gets its own session, so a terminal's Ctrl-C reaches only the
parent, which then stops the children in order. Should the parent die without
doing so (SIGKILL, a crash), the kernel kills the children with it: their
parent-death signal is SIGKILL, not SIGTERM, because a graceful stop needs
what died alongside — a kube-apiserver told to stop gracefully keeps waiting
for its gone etcd for half a minute, the operator for its gone API server
for a minute and more.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

_PR_SET_PDEATHSIG = 1
GRACE_PERIOD = 15.0
"""How long a process may take to stop on SIGTERM before it gets SIGKILL."""


def _die_with(parent: int, then: Callable[[], None] | None) -> Callable[[], None]:
    """Runs in the child before exec, and ``then`` after it.

    The kernel sends the signal when the *thread* that forked ends, so spawn
    from the main thread or one living as long as the child.
    """

    def die_with_parent() -> None:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)
        if then is not None:
            then()

    return die_with_parent


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn(
    args: list[str],
    *,
    output: IO[bytes] | None = None,
    env: Mapping[str, str] | None = None,
    before_exec: Callable[[], None] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``args``; its output goes to ``output`` (a file) or, when None, to ours.

    ``before_exec`` runs in the child just before ``args`` replaces it (to
    enter a namespace or a cgroup, say): only system calls, no locks.
    """
    return subprocess.Popen(
        args,
        stdout=output,
        stderr=subprocess.STDOUT if output else None,
        stdin=subprocess.DEVNULL,
        env=dict(env) if env is not None else None,
        start_new_session=True,
        preexec_fn=_die_with(os.getpid(), before_exec),
    )


def spawn_logged(args: list[str], log: Path, before_exec: Callable[[], None] | None = None) -> subprocess.Popen[bytes]:
    """Start ``args`` with its output appended to ``log``."""
    with log.open("ab") as output:
        return spawn(args, output=output, before_exec=before_exec)


def raise_if_exited(name: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Fail with the end of its log if ``process`` is no longer running: a start cannot succeed then."""
    if process.poll() is not None:
        tail = log.read_text(errors="replace").splitlines()[-20:]
        raise RuntimeError(f"{name} exited with {process.returncode}; last lines of {log}:\n" + "\n".join(tail))


def terminate(exited: Mapping[int, Callable[[], bool]], timeout: float = GRACE_PERIOD) -> None:
    """SIGTERM every pid at once, SIGKILL those left after ``timeout``; return once each ``exited()`` says so.

    Stopping together what may stop together keeps a stop's worst case to one
    grace period per stage rather than per process.
    """
    _signal_running(exited, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while not _all_exited(exited) and time.monotonic() < deadline:
        time.sleep(0.05)
    _signal_running(exited, signal.SIGKILL)
    while not _all_exited(exited):
        time.sleep(0.05)


def _signal_running(exited: Mapping[int, Callable[[], bool]], signum: signal.Signals) -> None:
    """Only pids not yet exited: a reaped child's pid may already belong to someone else."""
    for pid, done in exited.items():
        if not done():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)


def _all_exited(exited: Mapping[int, Callable[[], bool]]) -> bool:
    return all(done() for done in exited.values())


def stop(*children: subprocess.Popen[bytes], timeout: float = GRACE_PERIOD) -> None:
    """Stop ``children`` together, gracefully within ``timeout``, and reap them."""
    terminate({child.pid: functools.partial(_exited, child) for child in children}, timeout)


def _exited(child: subprocess.Popen[bytes]) -> bool:
    return child.poll() is not None
