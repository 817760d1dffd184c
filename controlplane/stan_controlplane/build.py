"""Build the control plane's and the node's binaries once, from the Go module proxy, and cache them.

The versions are pinned by the wrapper modules beside this file (``kube/``,
``etcd/``, ``containerd/``, ``coredns/``, and ``helm/`` and ``promtool/`` for the chart's tests);
the cache key includes a digest of their go.mod and go.sum (and Go source, which
only coredns' has) and of the build settings, so a version bump rebuilds and an
unchanged checkout never does. The cache lives outside the work tree so that
fresh clones on the same machine reuse it. The node's binaries (CoreDNS's too)
are built only where a node can run (see ``node.wanted``), so a machine that
cannot run one never waits for them.
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
from collections.abc import Callable
from pathlib import Path

MODULES_DIR = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Component:
    """Commands built together from one wrapper module."""

    name: str
    pinned_module: str
    executables: dict[str, str]  # Go package -> the executable's name
    cold_build: str
    """How long a build from empty Go caches took on 2 cores, for the progress message."""
    stamps: Callable[[Component], dict[str, str]] = lambda component: {}
    """Go string variables set at link time (``-X``), as the upstream release builds set them."""
    module: str = ""
    """The wrapper module's directory when it is not ``name``: one module may feed two components."""
    cgo: bool = True
    """False builds pure-Go static binaries, as upstream builds containerd's shim, whatever C compiler is around."""
    tags: tuple[str, ...] = ()
    """Go build tags."""

    @property
    def module_dir(self) -> Path:
        return MODULES_DIR / (self.module or self.name)

    @property
    def version(self) -> str:
        return self.required_version(self.pinned_module)

    def required_version(self, module: str) -> str:
        go_mod = (self.module_dir / "go.mod").read_text()
        match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)} (v\S+)", go_mod, re.MULTILINE)
        if match is None:
            raise RuntimeError(f"{self.module_dir}/go.mod does not require {module}")
        return match.group(1)

    @property
    def ldflags(self) -> str:
        return " ".join(f"-X {variable}={value}" for variable, value in sorted(self.stamps(self).items()))

    @property
    def cache_key(self) -> str:
        digest = hashlib.sha256()
        # A wrapper's own Go source (coredns' main.go) too; the others have none, so their keys stay as they were.
        for file in ("go.mod", "go.sum", *sorted(path.name for path in self.module_dir.glob("*.go"))):
            digest.update((self.module_dir / file).read_bytes())
        digest.update(self.ldflags.encode())  # empty for most: their keys stay as they were
        digest.update(b"" if self.cgo else b"CGO_ENABLED=0")
        digest.update(",".join(self.tags).encode())  # none for most: their keys stay as they were
        return f"{self.name}-{self.version}-{digest.hexdigest()[:12]}"


def _helm_stamps(component: Component) -> dict[str, str]:
    """What Helm's Makefile stamps: its version, and the Kubernetes version of its client-go,
    which ``helm template`` and ``helm lint`` assume for ``.Capabilities`` (else a long-gone v1.20)."""
    _, minor, _ = component.required_version("k8s.io/client-go").split(".")
    stamps = {"helm.sh/helm/v3/internal/version.version": component.version}
    for package in ("helm.sh/helm/v3/pkg/chartutil", "helm.sh/helm/v3/pkg/lint/rules"):
        stamps |= {f"{package}.k8sVersionMajor": "1", f"{package}.k8sVersionMinor": minor}
    return stamps


def _promtool_stamps(component: Component) -> dict[str, str]:
    """What Prometheus' release build stamps: the version ``promtool --version`` reports. The Go module's
    v0.316.0 is release 3.16.0."""
    _, release, patch = component.version.split(".")
    return {"github.com/prometheus/common/version.Version": f"{release[0]}.{int(release[1:])}.{patch}"}


def _kube_stamps(component: Component) -> dict[str, str]:
    """What Kubernetes' release build stamps (hack/lib/version.sh): the version every binary reports,
    which the Node object shows as its kubelet's and Helm reads as ``.Capabilities.KubeVersion``."""
    version = component.version
    _, minor, _ = version.split(".")
    values = {"gitVersion": version, "gitMajor": "1", "gitMinor": minor, "gitTreeState": "clean"}
    return {
        f"{package}.{name}": value
        for package in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version")
        for name, value in values.items()
    }


def _containerd_stamps(component: Component) -> dict[str, str]:
    """What containerd's Makefile stamps: the version the CRI reports to the kubelet."""
    return {"github.com/containerd/containerd/v2/version.Version": component.version}


KUBE = Component(
    name="kube",
    pinned_module="k8s.io/kubernetes",
    executables={
        "k8s.io/kubernetes/cmd/kube-apiserver": "kube-apiserver",
        "k8s.io/kubernetes/cmd/kube-controller-manager": "kube-controller-manager",
        "k8s.io/kubernetes/cmd/kubectl": "kubectl",
    },
    cold_build="about 5 minutes",
    stamps=_kube_stamps,
)
ETCD = Component(
    name="etcd",
    pinned_module="go.etcd.io/etcd/server/v3",
    executables={"go.etcd.io/etcd/server/v3": "etcd"},
    cold_build="under 1 minute",
)
HELM = Component(
    name="helm",
    pinned_module="helm.sh/helm/v3",
    executables={"helm.sh/helm/v3/cmd/helm": "helm"},
    cold_build="1 to 3 minutes",
    stamps=_helm_stamps,
)
PROMTOOL = Component(
    name="promtool",
    pinned_module="github.com/prometheus/prometheus",
    executables={"github.com/prometheus/prometheus/cmd/promtool": "promtool"},
    cold_build="2 to 3 minutes",
    stamps=_promtool_stamps,
    cgo=False,  # as Prometheus' release builds it
    # Without the service discoveries (cloud SDKs), which checking and testing rules does not use: half the build.
    tags=("remove_all_sd",),
)
KUBE_NODE = Component(
    name="kube-node",
    module="kube",
    pinned_module="k8s.io/kubernetes",
    executables={
        "k8s.io/kubernetes/cmd/kubelet": "kubelet",
        "k8s.io/kubernetes/cmd/kube-scheduler": "kube-scheduler",
        "k8s.io/kubernetes/cmd/kube-proxy": "kube-proxy",
    },
    cold_build="about 40 seconds once kube is built, whose packages it shares",
    stamps=_kube_stamps,
)
CONTAINERD = Component(
    name="containerd",
    pinned_module="github.com/containerd/containerd/v2",
    executables={
        "github.com/containerd/containerd/v2/cmd/containerd": "containerd",
        "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2": "containerd-shim-runc-v2",
        "github.com/containerd/containerd/v2/cmd/ctr": "ctr",
    },
    cold_build="about 75 seconds",
    stamps=_containerd_stamps,
    cgo=False,  # and so without the btrfs snapshotter, whose C headers a fresh machine lacks
)
COREDNS = Component(
    name="coredns",
    pinned_module="github.com/coredns/coredns",
    executables={"stan.local/controlplane/coredns": "coredns"},  # the wrapper's own main: the plugins it uses
    cold_build="about 80 seconds",
    cgo=False,  # static, so that its image holds the binary alone
)
CONTROL_PLANE = (KUBE, ETCD, HELM, PROMTOOL)
NODE = (KUBE_NODE, CONTAINERD, COREDNS)
COMPONENTS = CONTROL_PLANE + NODE


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
    """Where a built binary lives, by its name: ``etcd``, ``kube-apiserver``, ``kubelet``, ``ctr``, ``helm``,
    ``promtool``..."""
    for component in COMPONENTS:
        if name in component.executables.values():
            return binary_dir(component) / name
    raise KeyError(name)


def ensure_built(components: tuple[Component, ...] = CONTROL_PLANE, out=sys.stderr) -> None:
    """Build whatever of ``components`` is not cached yet, printing progress for the long cold build."""
    for component in components:
        target = binary_dir(component)
        if target.is_dir():
            continue
        _build(component, target, out)


def _build(component: Component, target: Path, out) -> None:
    if shutil.which("go") is None:
        raise RuntimeError("Go is needed to build the local control plane; install Go >= 1.26")
    print(
        f"==> building {component.name} {component.version} (first run only; "
        f"from empty caches on 2 cores: {component.cold_build})",
        file=out,
        flush=True,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{component.name}-", dir=target.parent))
    started = time.monotonic()
    # `go build -v` names packages as it compiles them; downloads before that are silent, so say so.
    print(f"    {component.name}: downloading Go modules", file=out, flush=True)
    downloaded = subprocess.run(["go", "mod", "download"], cwd=component.module_dir, capture_output=True, text=True)
    if downloaded.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(f"downloading the modules of {component.name} failed:\n{downloaded.stderr[-4000:]}")
    print(
        f"    {component.name}: modules ready after {time.monotonic() - started:.0f}s; compiling", file=out, flush=True
    )
    command = [
        "go",
        "build",
        "-v",
        "-trimpath",
        f"-ldflags={component.ldflags}",
        f"-tags={','.join(component.tags)}",
        "-o",
        str(staging) + "/",
        *component.executables,
    ]
    env = os.environ | ({} if component.cgo else {"CGO_ENABLED": "0"})
    with subprocess.Popen(
        command, cwd=component.module_dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    ) as process:
        assert process.stderr is not None
        compiled = 0
        errors: list[str] = []
        for line in process.stderr:
            if line.startswith(("#", " ", "\t")) or ".go:" in line:
                errors.append(line.rstrip())
                continue
            compiled += 1
            if compiled % 100 == 0:
                print(
                    f"    {component.name}: {compiled} packages compiled, {time.monotonic() - started:.0f}s",
                    file=out,
                    flush=True,
                )
    if process.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(f"building {component.name} failed:\n" + "\n".join(errors[-40:]))
    for package, name in component.executables.items():
        (staging / _go_default_name(package)).rename(staging / name)
    if target.is_dir():  # a concurrent build of the same version finished first
        shutil.rmtree(staging)
        return
    staging.rename(target)
    print(
        f"==> built {component.name} {component.version} in {time.monotonic() - started:.0f}s into {target}",
        file=out,
        flush=True,
    )
