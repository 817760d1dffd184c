"""Child processes that never outlive their parent.

Each child gets PR_SET_PDEATHSIG, so a parent killed with SIGKILL still takes
its children down, and its own session, so a terminal's Ctrl-C reaches only
the parent, which then stops the children in order.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from typing import IO

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn(args: list[str], *, output: IO[bytes] | None = None,
          env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``args``; its output goes to ``output`` (a file) or, when None, to ours."""
    return subprocess.Popen(args, stdout=output, stderr=subprocess.STDOUT if output else None,
                            stdin=subprocess.DEVNULL, env=dict(env) if env is not None else None,
                            start_new_session=True, preexec_fn=_die_with_parent)


def terminate(pid: int, exited: Callable[[], bool], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; return once ``exited()`` says so."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if exited():
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while not exited():
        time.sleep(0.05)


def stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    terminate(process.pid, lambda: process.poll() is not None, timeout)
