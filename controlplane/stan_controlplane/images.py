"""OCI images built here, without Docker or a registry, for the local node to run.

Three images: busybox (Debian's busybox-static), which the node runs as its sandbox
("pause") image and tests run as a small Pod image; CoreDNS, the cluster's DNS
add-on, its binary alone; and Stan's own, by the Dockerfile's recipe, from a
debootstrap'ed Debian with its Python, a venv, and wheels built here. Each is
an OCI archive for ``ctr images import``, which stores it under the name a
Pod's reference to it resolves to.

Each is cached by a digest of what goes into it: the Debian package versions,
the files of the project that ship (as ``.dockerignore`` says), the reference,
and the recipe itself; a build with nothing changed is a lookup. Stan's image
is two layers, Debian with Python and then the venv, cached apart, so that a
change to Stan's code costs a venv and not a debootstrap. The cache sits beside
the control-plane binaries, outside the work tree.
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
from typing import TextIO

import yaml

from stan_controlplane import build, buildcontext, commands, debian, oci

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = PROJECT_ROOT / "charts" / "stan"
ARCHIVE = "image.tar"
KEPT_PER_IMAGE = 3
"""Cached builds kept of each image, the most recently used: enough for a few checkouts side by side,
while an image per edit of Stan's code does not pile up."""

STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

BUSYBOX_PACKAGE = "busybox-static"
BUSYBOX_REPOSITORY = "stan.local/busybox"
"""A registry host no kubelet can pull from: with a tag that is not ``latest``, it is only ever found locally."""
BUSYBOX_CONFIG = oci.ImageConfig(
    # Non-root, as the pause image is, so that a Job under the restricted Pod Security Standard runs it unchanged.
    user="65534:65534",
    env={"PATH": STANDARD_PATH},
    # A sandbox only needs to stay up; a Pod's command or args replace this.
    cmd=("/bin/sleep", "infinity"),
)

COREDNS_REPOSITORY = "stan.local/coredns"
COREDNS_CONFIG = oci.ImageConfig(
    user="65532:65532",  # non-root, as CoreDNS's own image; it listens above 1024 (see ``dns``)
    env={},
    entrypoint=("/coredns",),
)

SUITE = "bookworm"
"""Debian's release, the one the Dockerfile's ``python:3.11-slim-bookworm`` is built on."""
PYTHON = "python3.11"
VENV = "/opt/stan"
STAN_USER = ("stan", 10001)
"""The user and group the Dockerfile adds, by name and id: with a passwd entry, the user has a home."""
STAN_CONFIG = oci.ImageConfig(
    user="10001:10001",
    env={
        "PATH": f"{VENV}/bin:{STANDARD_PATH}",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "PIP_NO_CACHE_DIR": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    },
    entrypoint=("stan",),
    cmd=("--help",),
    workdir="/tmp",
    ports=(8080, 8081, 9443),  # the REST facade, the operator's liveness endpoint, the admission webhook
)
WHEELS = "/tmp/wheels"
"""Where the wheels sit in the build's scratch root while pip installs them; never in a layer."""

_SLIMMED = (
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "var/cache/apt",
    "var/lib/apt/lists",
    "var/log",
    "dev",
)
"""What Debian's slim images leave out, emptied after debootstrap; the runtime mounts /dev."""
_HOST_FILES = ("etc/resolv.conf", "etc/hostname")
"""Copied in from this machine by debootstrap; a container gets its own from the runtime."""
_PLATFORM_PROBE = (
    "import platform, sys; print('%d.%d' % sys.version_info[:2], platform.libc_ver()[1], platform.machine())"
)
"""Asks the image's Python what the wheels must fit: its version, its C library's, its architecture."""


@dataclasses.dataclass(frozen=True)
class Image:
    """An image built here: its OCI archive, and the reference a Pod spec names it by."""

    reference: str
    archive: Path

    @property
    def containerd_name(self) -> str:
        """The name the archive gives containerd: ``reference`` as the CRI normalizes it, Docker's way
        (``stan:0.1.0`` is ``docker.io/library/stan:0.1.0``), so a Pod naming ``reference`` finds it."""
        first, slash, _ = self.reference.partition("/")
        if slash and ("." in first or ":" in first or first == "localhost"):
            return self.reference
        return f"docker.io/{self.reference}" if slash else f"docker.io/library/{self.reference}"

    @property
    def tag(self) -> str:
        return self.reference.rpartition(":")[2]


def busybox_image(out: TextIO = sys.stderr) -> Image:
    """The busybox image, ``stan.local/busybox:<Debian's version>``: the node's sandbox, and a Pod image
    with ``/bin/sh``, ``sleep``, ``echo`` and the rest of busybox's applets."""
    _require_root("the busybox image")
    debian.ensure_installed((BUSYBOX_PACKAGE, "umoci"), "building the busybox image", out)
    version = debian.installed_version(BUSYBOX_PACKAGE)
    assert version is not None
    tag = re.sub(r"[^\w.-]", "_", version.partition(":")[2] or version)  # without the epoch, in a tag's characters
    reference = f"{BUSYBOX_REPOSITORY}:{tag}"
    key = _digest(_recipe(), BUSYBOX_PACKAGE, version, reference, _tool_versions())
    return _one_layer_image("busybox", key, reference, _busybox_rootfs, f"{BUSYBOX_PACKAGE} {version}", BUSYBOX_CONFIG)


def coredns_image(out: TextIO = sys.stderr) -> Image:
    """CoreDNS as built here (``build.COREDNS``), ``stan.local/coredns:<version>``: the binary alone, which is
    static and needs nothing beside it, not even a shell."""
    _require_root("the CoreDNS image")
    debian.ensure_installed(("umoci",), "building the CoreDNS image", out)
    component = build.COREDNS
    build.ensure_built((component,), out)
    reference = f"{COREDNS_REPOSITORY}:{component.version}"
    key = _digest(_recipe(), component.cache_key, reference, _tool_versions())

    def coredns_rootfs(rootfs: Path) -> None:
        rootfs.mkdir()
        shutil.copy2(build.binary_path("coredns"), rootfs / "coredns")

    return _one_layer_image("coredns", key, reference, coredns_rootfs, f"coredns {component.version}", COREDNS_CONFIG)


def _one_layer_image(
    name: str, key: str, reference: str, make_rootfs: Callable[[Path], None], created_by: str, config: oci.ImageConfig
) -> Image:
    """The cached image of one layer: the directory ``make_rootfs`` fills, whole, with ``config``."""

    def build_image(result: Path, scratch: Path) -> None:
        rootfs = scratch / "rootfs"
        make_rootfs(rootfs)
        layout = oci.Layout.create(scratch / "layout")
        layout.add_layer(rootfs, sorted(os.listdir(rootfs)), created_by)
        layout.configure(config)
        built = Image(reference, result / ARCHIVE)
        layout.write_archive(built.archive, built.tag, built.containerd_name)

    return Image(reference, _cached(name, key, build_image) / ARCHIVE)


def stan_image(out: TextIO = sys.stderr) -> Image:
    """Stan's image, by the Dockerfile's recipe, named as ``charts/stan`` expects it (``stan:<appVersion>``)."""
    _require_root("Stan's image")
    debian.ensure_installed(("debootstrap", "umoci"), "building Stan's image", out)
    reference = _chart_reference()
    base = _debian_base(out)
    with tempfile.TemporaryDirectory(prefix="stan-build-context-") as context:
        source = Path(context)
        # The base's cache entry is named by its key: a new base makes a new image.
        key = _digest(base.path.parent.name, reference, buildcontext.snapshot(PROJECT_ROOT, source))

        def build_stan(result: Path, scratch: Path) -> None:
            print(
                f"==> building Stan's image {reference} (about 15 s; a new Debian layer adds 40 s)",
                file=out,
                flush=True,
            )
            started = time.monotonic()
            rootfs = scratch / "rootfs"
            base.extract(rootfs)
            _install_stan(rootfs, source, out)
            layout = base.copy(scratch / "layout")
            layout.add_layer(rootfs, [VENV.lstrip("/")], f"pip install stan into the venv {VENV}")
            layout.configure(STAN_CONFIG)
            built = Image(reference, result / ARCHIVE)
            layout.write_archive(built.archive, built.tag, built.containerd_name)
            print(
                f"==> built {reference} in {time.monotonic() - started:.0f}s "
                f"({built.archive.stat().st_size / 2**20:.0f} MiB)",
                file=out,
                flush=True,
            )

        return Image(reference, _cached("stan", key, build_stan) / ARCHIVE)


def import_image(image: Image, ctr: Path, address: Path, namespace: str = "k8s.io") -> None:
    """Import ``image`` into the containerd listening at ``address``, in the namespace the CRI (and so
    the kubelet) reads; ``ctr`` is the client of that containerd's version. The archive names the image,
    so no ``--base-name`` is needed; importing the same name again replaces the image."""
    commands.run(
        [str(ctr), "--address", str(address), "--namespace", namespace, "images", "import", str(image.archive)],
        f"importing {image.reference}",
    )


def _chart_reference() -> str:
    """``image.repository:image.tag`` of the chart's values, the tag defaulting to the chart's appVersion
    as its templates default it."""
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["image"]
    tag = values["tag"] or yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())["appVersion"]
    return f"{values['repository']}:{tag}"


def _debian_base(out: TextIO) -> oci.Layout:
    """The cached layout of Stan's first layer: Debian ``SUITE`` (minbase) with its Python and Stan's user."""
    uri = debian.mirror(SUITE)
    key = _digest(_recipe(), SUITE, uri, debian.release_digest(uri, SUITE), _tool_versions())

    def build_base(result: Path, scratch: Path) -> None:
        print(
            f"==> building the Debian {SUITE} layer of Stan's image from {uri} (about 40 s, once per "
            f"Debian point release)",
            file=out,
            flush=True,
        )
        started = time.monotonic()
        rootfs = scratch / "rootfs"
        debs = build.cache_root() / "images" / "debs"  # kept across builds: a rebuild downloads nothing new
        debs.mkdir(parents=True, exist_ok=True)
        commands.run(
            ["debootstrap", "--variant=minbase", f"--include={PYTHON}", f"--cache-dir={debs}", SUITE, str(rootfs), uri],
            "debootstrap",
            out,
        )
        name, uid = STAN_USER
        _chroot(rootfs, ["groupadd", "--gid", str(uid), name], out)
        _chroot(
            rootfs,
            [
                "useradd",
                "--uid",
                str(uid),
                "--gid",
                str(uid),
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ],
            out,
        )
        _slim(rootfs)
        oci.Layout.create(result / "layout").add_layer(
            rootfs,
            sorted(os.listdir(rootfs)),
            f"debootstrap --variant=minbase --include={PYTHON} {SUITE}; useradd {name}",
        )
        print(f"==> built the Debian layer in {time.monotonic() - started:.0f}s", file=out, flush=True)

    return oci.Layout(_cached(f"debian-{SUITE}", key, build_base) / "layout")


def _slim(rootfs: Path) -> None:
    """Leave out what a slim Debian image does: documentation but its copyright files, manuals,
    translations, apt's caches and lists, logs."""
    for directory in _SLIMMED:
        for entry in (rootfs / directory).iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    for entry in (rootfs / "usr/share/doc").rglob("*"):
        if not entry.is_dir() and entry.name != "copyright":
            entry.unlink()
    for name in _HOST_FILES:
        (rootfs / name).unlink(missing_ok=True)


def _install_stan(rootfs: Path, source: Path, out: TextIO) -> None:
    """The Dockerfile's runtime stage: a venv holding only Stan and its dependencies, installed from the
    wheels by the image's own Python, in a chroot, with no network. pip runs from its wheel, so it is not
    in the venv either."""
    pip = _wheels(rootfs, source, out)
    _chroot(rootfs, [PYTHON, "-m", "venv", "--without-pip", VENV], out)
    _chroot(
        rootfs,
        [
            f"{VENV}/bin/python",
            f"{WHEELS}/{pip}/pip",
            "install",
            "--no-index",
            f"--find-links={WHEELS}",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "stan",
        ],
        out,
    )


def _wheels(rootfs: Path, source: Path, out: TextIO) -> str:
    """The Dockerfile's builder stage: wheels of the build context at ``source``, of Stan's dependencies
    and of pip, into ``WHEELS`` of ``rootfs``; returns the name of pip's wheel.

    pip runs on this machine, with its configuration (index, certificates,
    cache), but resolves for the image's Python, C library and architecture,
    which it is told, rather than for this machine's.
    """
    wheels = rootfs / WHEELS.lstrip("/")
    python, glibc, machine = _chroot(rootfs, [PYTHON, "-c", _PLATFORM_PROBE], out).split()
    print(
        f"    wheels: Stan's, then its dependencies' for Python {python}, glibc {glibc}, {machine}",
        file=out,
        flush=True,
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    commands.run([*pip, "wheel", "--no-deps", "--wheel-dir", str(wheels), str(source)], "pip wheel", out)
    target = [
        "--only-binary=:all:",
        f"--python-version={python}",
        "--implementation=cp",
        f"--abi=cp{python.replace('.', '')}",
        "--abi=abi3",
        "--abi=none",
        *(f"--platform={tag}" for tag in _manylinux_platforms(glibc, machine)),
    ]
    commands.run(
        [*pip, "download", "--dest", str(wheels), *target, str(next(wheels.glob("stan-*.whl"))), "pip"],
        "pip download",
        out,
    )
    return next(wheels.glob("pip-*.whl")).name


def _manylinux_platforms(glibc: str, machine: str) -> list[str]:
    """Every wheel platform tag a C library ``glibc`` runs, newest first: pip's ``--platform`` takes each
    tag literally, where on its own machine it would accept all the older ones."""
    major, minor = (int(part) for part in glibc.split(".")[:2])
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    return [f"manylinux_{major}_{older}_{machine}" for older in range(minor, 4, -1)] + [
        f"{name}_{machine}" for older, name in legacy.items() if older <= minor
    ]


def _busybox_rootfs(rootfs: Path) -> None:
    """busybox with a link for each applet where busybox itself would install it, a /tmp, and passwd
    entries so that ``id`` and ``ls -l`` name root and nobody."""
    busybox = rootfs / "bin" / "busybox"
    busybox.parent.mkdir(parents=True)
    shutil.copy2("/bin/busybox", busybox)
    applets = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True, check=True).stdout
    for applet in applets.split():
        link = rootfs / applet
        if not link.is_symlink() and not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to("/bin/busybox")
    (rootfs / "tmp").mkdir()
    (rootfs / "tmp").chmod(0o1777)
    (rootfs / "etc").mkdir()
    (rootfs / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    )
    (rootfs / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")


def _cached(name: str, key: str, build_into: Callable[[Path, Path], None]) -> Path:
    """The directory ``<cache>/images/<name>-<key>``, built when missing.

    ``build_into(result, scratch)`` writes what is kept into ``result``, which
    is renamed into place whole once it is complete, so an interrupted build
    leaves no half an image behind and two builds of one key race harmlessly;
    ``scratch`` (a root file system, wheels, layer tars) is always removed.
    """
    cache = build.cache_root() / "images"
    target = cache / f"{name}-{key}"
    if target.is_dir():
        os.utime(target)  # recently used: pruned last
        return target
    cache.mkdir(parents=True, exist_ok=True)
    result = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=cache))
    scratch = Path(tempfile.mkdtemp(prefix=f".{name}-scratch-", dir=cache))
    try:
        build_into(result, scratch)
        result.chmod(0o755)  # readable like the binaries beside it; mkdtemp makes it private
        if not target.is_dir():
            result.rename(target)
    finally:
        shutil.rmtree(result, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    used = sorted(cache.glob(f"{name}-*"), key=lambda entry: entry.stat().st_mtime, reverse=True)
    for stale in used[KEPT_PER_IMAGE:]:
        shutil.rmtree(stale, ignore_errors=True)
    return target


def _digest(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(f"{len(part)}:{part}".encode())
    return digest.hexdigest()[:16]


def _recipe() -> str:
    """The recipe's own text in every key: changing how an image is made rebuilds it."""
    return "".join(Path(__file__).with_name(f"{module}.py").read_text() for module in ("images", "oci", "debian"))


def _tool_versions() -> str:
    return " ".join(f"{tool}={debian.installed_version(tool)}" for tool in ("umoci", "debootstrap"))


def _require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise RuntimeError(
            f"building {what} needs root: its files belong to root, and Debian is installed "
            f"into it with debootstrap and chroot"
        )


def _chroot(rootfs: Path, command: list[str], out: TextIO) -> str:
    """Run ``command`` inside ``rootfs`` with a clean environment (none of this machine's settings leak
    in) and return its output."""
    environment = {"PATH": STANDARD_PATH, "HOME": "/root", "LANG": "C.UTF-8"}
    return commands.run(["chroot", str(rootfs), *command], command[0], out, env=environment)
