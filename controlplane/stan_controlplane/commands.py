"""Commands a build runs, quiet unless slow or failing.

debootstrap and pip print a line per package: far too much to show, and they
take too long to run silently. So a command's latest line is shown every few
seconds, and its last lines make the error when it fails.
"""

from __future__ import annotations

import collections
import io
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import TextIO

PROGRESS_INTERVAL = 5.0
"""Seconds between two progress lines of one command."""


def run(command: list[str], label: str, out: TextIO = sys.stderr, env: Mapping[str, str] | None = None) -> str:
    """Run ``command`` to its end and return its output (stdout and stderr together); raise RuntimeError,
    with its last lines, when it fails."""
    started = shown = time.monotonic()
    last_lines: collections.deque[str] = collections.deque(maxlen=40)
    output = io.StringIO()
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, env=env
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            output.write(line)
            last_lines.append(line.rstrip())
            if time.monotonic() - shown >= PROGRESS_INTERVAL and line.strip():
                shown = time.monotonic()
                print(f"    {label}: {line.strip()} ({shown - started:.0f}s)", file=out, flush=True)
    if process.returncode != 0:
        raise RuntimeError(f"{label} failed (exit {process.returncode}): {' '.join(command)}\n" + "\n".join(last_lines))
    return output.getvalue()
