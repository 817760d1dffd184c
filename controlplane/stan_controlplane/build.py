"""Build the control-plane binaries once, from the Go module proxy, and cache them.

The versions are pinned by the wrapper modules beside this file (``kube/`` and
``etcd/``); the cache key includes a digest of their go.mod and go.sum, so a
version bump rebuilds and an unchanged checkout never does. The cache lives
outside the work tree so that fresh clones on the same machine reuse it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODULES_DIR = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Component:
    """One wrapper module and the commands it builds."""

    name: str
    pinned_module: str
    executables: dict[str, str]  # Go package -> the executable's name

    @property
    def module_dir(self) -> Path:
        return MODULES_DIR / self.name

    @property
    def version(self) -> str:
        go_mod = (self.module_dir / "go.mod").read_text()
        match = re.search(rf"^\s*{re.escape(self.pinned_module)} (v\S+)", go_mod, re.MULTILINE)
        if match is None:
            raise RuntimeError(f"{self.module_dir}/go.mod does not require {self.pinned_module}")
        return match.group(1)

    @property
    def cache_key(self) -> str:
        digest = hashlib.sha256()
        for file in ("go.mod", "go.sum"):
            digest.update((self.module_dir / file).read_bytes())
        return f"{self.name}-{self.version}-{digest.hexdigest()[:12]}"



KUBE = Component(
    name="kube",
    pinned_module="k8s.io/kubernetes",
    executables={
        "k8s.io/kubernetes/cmd/kube-apiserver": "kube-apiserver",
        "k8s.io/kubernetes/cmd/kube-controller-manager": "kube-controller-manager",
        "k8s.io/kubernetes/cmd/kubectl": "kubectl",
    },
)
ETCD = Component(name="etcd", pinned_module="go.etcd.io/etcd/server/v3",
                 executables={"go.etcd.io/etcd/server/v3": "etcd"})
COMPONENTS = (KUBE, ETCD)


def cache_root() -> Path:
    explicit = os.environ.get("STAN_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "stan"


def binary_dir(component: Component) -> Path:
    return cache_root() / "bin" / component.cache_key


def _go_default_name(package: str) -> str:
    """The file ``go build -o DIR/`` writes: the last path element, skipping a major-version suffix."""
    parts = package.split("/")
    return parts[-2] if re.fullmatch(r"v\d+", parts[-1]) else parts[-1]


def binary_path(name: str) -> Path:
    """Where a built binary lives: ``etcd``, ``kube-apiserver``, ``kube-controller-manager``, ``kubectl``."""
    for component in COMPONENTS:
        if name in component.executables.values():
            return binary_dir(component) / name
    raise KeyError(name)


def ensure_built(out=sys.stderr) -> None:
    """Build whatever is not cached yet, printing progress for the long cold build."""
    for component in COMPONENTS:
        target = binary_dir(component)
        if target.is_dir():
            continue
        _build(component, target, out)


def _build(component: Component, target: Path, out) -> None:
    if shutil.which("go") is None:
        raise RuntimeError("Go is needed to build the local control plane; install Go >= 1.26")
    print(f"==> building {component.name} {component.version} (first run only; "
          f"about 5 minutes on 2 cores for kube, 1 for etcd, plus module downloads)", file=out, flush=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{component.name}-", dir=target.parent))
    started = time.monotonic()
    command = ["go", "build", "-v", "-trimpath", "-o", str(staging) + "/", *component.executables]
    process = subprocess.Popen(command, cwd=component.module_dir, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    compiled = 0
    errors: list[str] = []
    for line in process.stderr:
        if line.startswith(("#", " ", "\t")) or ".go:" in line:
            errors.append(line.rstrip())
            continue
        compiled += 1
        if compiled % 100 == 0:
            print(f"    {component.name}: {compiled} packages compiled, "
                  f"{time.monotonic() - started:.0f}s", file=out, flush=True)
    if process.wait() != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(f"building {component.name} failed:\n" + "\n".join(errors[-40:]))
    for package, name in component.executables.items():
        (staging / _go_default_name(package)).rename(staging / name)
    staging.rename(target)
    print(f"==> built {component.name} {component.version} in {time.monotonic() - started:.0f}s "
          f"into {target}", file=out, flush=True)
