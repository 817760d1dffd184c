"""The host's Debian: the packages that build images, and the archive mirror Debian comes from.

Images are made from Debian's own packages with Debian's own tools (busybox-static,
umoci, debootstrap), so that building one needs neither Docker nor a registry; this
module installs what is missing and says which versions went in, for the images'
cache keys.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TextIO

from stan_controlplane import commands

SOURCES = Path("/etc/apt/sources.list")
SOURCES_DIR = Path("/etc/apt/sources.list.d")
LISTS_DIR = Path("/var/lib/apt/lists")
_LOCK_TIMEOUT = "DPkg::Lock::Timeout=300"
"""Another apt run (a second build, the node's packages) holds the lock for a while; wait rather than fail."""


def installed_version(package: str) -> str | None:
    """The installed version of ``package``, or None when it is not installed."""
    if shutil.which("dpkg-query") is None:
        raise RuntimeError("images are built from Debian's packages, and this machine has no dpkg")
    shown = subprocess.run(
        ["dpkg-query", "--show", "--showformat=${db:Status-Abbrev}\t${Version}", package],
        capture_output=True,
        text=True,
    )
    status, _, version = shown.stdout.partition("\t")
    return version if shown.returncode == 0 and status.startswith("ii") else None


def ensure_installed(packages: tuple[str, ...], purpose: str, out: TextIO = sys.stderr) -> None:
    """Install whichever of ``packages`` is missing, as root; otherwise say how to.

    The package lists are refreshed first: a machine's lists may be old enough
    that the versions they name are gone from the mirror.
    """
    missing = [package for package in packages if installed_version(package) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        raise RuntimeError(
            f"{purpose} needs the Debian packages {' '.join(missing)}: "
            f"install them with `sudo apt-get install {' '.join(missing)}`"
        )
    print(f"==> installing the Debian packages {' '.join(missing)} ({purpose})", file=out, flush=True)
    apt_get = ["apt-get", "--quiet", "--option", _LOCK_TIMEOUT]
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    commands.run([*apt_get, "update"], "apt-get update", out, env=environment)
    commands.run(
        [*apt_get, "install", "--yes", "--no-install-recommends", *missing], "apt-get install", out, env=environment
    )


def mirror(suite: str) -> str:
    """The URI of the configured apt source that serves Debian's ``suite``.

    The machine's own mirror, rather than a well-known one, because it is the
    one this machine is allowed and configured to reach.
    """
    for uri, suites in _sources():
        if suite in suites:
            return uri.rstrip("/")
    raise RuntimeError(
        f"no apt source in {SOURCES} or {SOURCES_DIR}/ serves Debian {suite}; add one, e.g. "
        f"`deb http://deb.debian.org/debian {suite} main`"
    )


def release_digest(uri: str, suite: str) -> str:
    """A digest of the Release file of ``suite`` at ``uri`` as apt last fetched it ("" if it never did).

    The Release file names every package version the suite holds, so an image
    built from the suite is rebuilt when a point release changes them, without
    asking the network whether anything changed.
    """
    site = re.sub(r"^[a-z+]+://", "", uri).rstrip("/").replace("/", "_")
    for name in ("InRelease", "Release"):
        release = LISTS_DIR / f"{site}_dists_{suite}_{name}"
        if release.is_file():
            return hashlib.sha256(release.read_bytes()).hexdigest()
    return ""


def _sources() -> list[tuple[str, list[str]]]:
    """Each enabled ``deb`` source as (URI, suites), from both the one-line and the deb822 formats."""
    found: list[tuple[str, list[str]]] = []
    one_line = [SOURCES, *sorted(SOURCES_DIR.glob("*.list"))]
    for path in (path for path in one_line if path.is_file()):
        for line in path.read_text().splitlines():
            words = re.sub(r"\[[^]]*]", " ", line.split("#", 1)[0]).split()  # without [options]
            if len(words) >= 3 and words[0] == "deb":
                found.append((words[1], [words[2]]))
    for path in sorted(SOURCES_DIR.glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields = dict(re.findall(r"^([A-Za-z-]+):[ \t]*(.*)$", stanza, re.MULTILINE))
            if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes") != "no":
                found += [(uri, fields.get("Suites", "").split()) for uri in fields.get("URIs", "").split()]
    return found
