"""Images built here without Docker: valid OCI archives that run, and Stan's agrees with the Dockerfile.

The archives are unpacked with umoci and run with runc, a real container as
containerd would run it, without a node. Stan's image is checked against the
Dockerfile instruction by instruction, and its venv against pyproject.toml and
this checkout's source. The images come from the same cache as ``make image``:
a cold build of Stan's image takes about a minute, once per cache key.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import tarfile
import time
import tomllib
import uuid
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from stan_controlplane import build, buildcontext, debian, images

from .conftest import PROJECT_ROOT

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="images are built and run as root (debootstrap, runc)")

ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}


class Bundle:
    """An image unpacked by umoci into a runtime bundle, run with runc as containerd would run it."""

    def __init__(self, image: images.Image, directory: Path) -> None:
        layout = directory / "layout"
        with tarfile.open(image.archive) as archive:
            archive.extractall(layout, filter="data")
        self.path = directory / "bundle"
        subprocess.run(
            ["umoci", "unpack", "--image", f"{layout}:{image.tag}", str(self.path)], check=True, capture_output=True
        )
        shutil.rmtree(layout)
        self.spec = json.loads((self.path / "config.json").read_text())
        self.runc_root = directory / "runc"

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"

    def _prepare(self, args: list[str] | None) -> str:
        """Write the runtime spec: the image's command unless ``args`` replace it, as a Pod's command does."""
        process = self.spec["process"] | {"terminal": False}
        if args is not None:
            process["args"] = args
        (self.path / "config.json").write_text(json.dumps(self.spec | {"process": process}))
        return f"stan-test-{uuid.uuid4().hex[:8]}"

    def run(self, args: list[str] | None = None) -> subprocess.CompletedProcess[str]:
        name = self._prepare(args)
        return subprocess.run(
            ["runc", "--root", str(self.runc_root), "run", "--bundle", str(self.path), name],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )

    def start(self) -> str:
        """Start the image's own command in the background; return the container's name."""
        name = self._prepare(None)
        subprocess.run(
            ["runc", "--root", str(self.runc_root), "run", "--detach", "--bundle", str(self.path), name],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        return name

    def status(self, name: str) -> str:
        state = subprocess.run(
            ["runc", "--root", str(self.runc_root), "state", name], capture_output=True, text=True, check=True
        )
        return json.loads(state.stdout)["status"]

    def remove(self, name: str) -> None:
        subprocess.run(
            ["runc", "--root", str(self.runc_root), "delete", "--force", name], check=True, capture_output=True
        )


@pytest.fixture(scope="module")
def busybox() -> images.Image:
    return images.busybox_image()


@pytest.fixture(scope="module")
def stan() -> images.Image:
    return images.stan_image()


@pytest.fixture(scope="module")
def runtime() -> None:
    debian.ensure_installed(("runc", "umoci"), "running images in tests")


@pytest.fixture(scope="module")
def busybox_bundle(busybox: images.Image, runtime: None, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return Bundle(busybox, tmp_path_factory.mktemp("busybox"))


@pytest.fixture(scope="module")
def stan_bundle(stan: images.Image, runtime: None, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return Bundle(stan, tmp_path_factory.mktemp("stan"))


def _archive_members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {member.name: tar.extractfile(member).read() for member in tar.getmembers() if member.isfile()}


def _blob(members: dict[str, bytes], descriptor: dict) -> bytes:
    return members["blobs/" + descriptor["digest"].replace(":", "/")]


def _image_config(archive: Path) -> dict:
    members = _archive_members(archive)
    (descriptor,) = json.loads(members["index.json"])["manifests"]
    manifest = json.loads(_blob(members, descriptor))
    return json.loads(_blob(members, manifest["config"]))


def test_busybox_is_an_oci_archive_containerd_names_as_its_reference(busybox: images.Image) -> None:
    members = _archive_members(busybox.archive)
    assert json.loads(members["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    (descriptor,) = json.loads(members["index.json"])["manifests"]
    assert busybox.reference.startswith("stan.local/busybox:") and busybox.tag != "latest"
    assert descriptor["annotations"] == {
        "org.opencontainers.image.ref.name": busybox.tag,
        "io.containerd.image.name": busybox.reference,
    }
    manifest = json.loads(_blob(members, descriptor))
    config = json.loads(_blob(members, manifest["config"]))
    for blob in [descriptor, manifest["config"], *manifest["layers"]]:
        content = _blob(members, blob)
        assert len(content) == blob["size"] and f"sha256:{hashlib.sha256(content).hexdigest()}" == blob["digest"]
    layers = [gzip.decompress(_blob(members, layer)) for layer in manifest["layers"]]
    assert config["rootfs"]["diff_ids"] == [f"sha256:{hashlib.sha256(layer).hexdigest()}" for layer in layers]
    assert (config["os"], config["architecture"]) == ("linux", ARCHITECTURES[platform.machine()])
    assert descriptor["platform"] == {"os": "linux", "architecture": config["architecture"]}
    assert config["config"]["User"] == "65534:65534", "non-root, so restricted Pods run it as it is"
    assert config["config"]["Cmd"] == ["/bin/sleep", "infinity"]


def test_busybox_stays_up_as_a_sandbox(busybox_bundle: Bundle) -> None:
    name = busybox_bundle.start()
    try:
        # A container started after it runs the same command, told to end, to its end: had the sandbox's command
        # been going to end at once, it would have by now.
        assert busybox_bundle.run(["/bin/sleep", "0"]).returncode == 0
        assert busybox_bundle.status(name) == "running"
    finally:
        busybox_bundle.remove(name)


def test_busybox_runs_a_pods_command(busybox_bundle: Bundle) -> None:
    ran = busybox_bundle.run(["/bin/sh", "-c", "echo hello from $(id -un) in $(pwd); exit 7"])
    assert (ran.returncode, ran.stdout) == (7, "hello from nobody in /\n"), ran.stderr


def test_coredns_is_its_binary_alone_run_as_non_root(runtime: None, tmp_path_factory: pytest.TempPathFactory) -> None:
    coredns = images.coredns_image()
    assert coredns.reference == f"stan.local/coredns:{build.COREDNS.version}"
    config = _image_config(coredns.archive)["config"]
    assert (config["User"], config["Entrypoint"]) == ("65532:65532", ["/coredns"])
    bundle = Bundle(coredns, tmp_path_factory.mktemp("coredns"))
    assert os.listdir(bundle.rootfs) == ["coredns"], "no shell, no libraries: a static binary needs none"
    ran = bundle.run(["/coredns", "-version"])
    assert ran.returncode == 0 and ran.stdout.startswith(f"CoreDNS-{build.COREDNS.version.removeprefix('v')}\n"), (
        ran.stderr
    )


def _dockerfile() -> tuple[dict[str, str], list[tuple[str, str]]]:
    """The Dockerfile's ARG defaults, and the instructions of its final stage with their arguments."""
    text = re.sub(r"\\\n", " ", (PROJECT_ROOT / "Dockerfile").read_text())
    instructions = [
        (line.split(None, 1)[0], " ".join(line.split()[1:]))
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    arguments = dict(argument.split("=", 1) for keyword, argument in instructions if keyword == "ARG")
    last_stage = max(index for index, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return arguments, instructions[last_stage + 1 :]


def _instruction(stage: list[tuple[str, str]], keyword: str) -> str:
    (argument,) = [argument for word, argument in stage if word == keyword]
    return argument


def test_stan_image_config_is_the_dockerfiles(stan: images.Image) -> None:
    _, stage = _dockerfile()
    config = _image_config(stan.archive)["config"]
    assert config["User"] == _instruction(stage, "USER")
    assert config["Entrypoint"] == json.loads(_instruction(stage, "ENTRYPOINT"))
    assert config["Cmd"] == json.loads(_instruction(stage, "CMD"))
    assert config["WorkingDir"] == _instruction(stage, "WORKDIR")
    assert dict(variable.split("=", 1) for variable in config["Env"]) == dict(
        variable.split("=", 1) for variable in shlex.split(_instruction(stage, "ENV"))
    )
    assert sorted(config["ExposedPorts"]) == sorted(f"{port}/tcp" for port in _instruction(stage, "EXPOSE").split())


def test_stan_image_is_named_as_the_chart_expects(stan: images.Image) -> None:
    chart = PROJECT_ROOT / "charts" / "stan"
    values = yaml.safe_load((chart / "values.yaml").read_text())["image"]
    tag = values["tag"] or yaml.safe_load((chart / "Chart.yaml").read_text())["appVersion"]
    assert stan.reference == f"{values['repository']}:{tag}"
    members = _archive_members(stan.archive)
    (descriptor,) = json.loads(members["index.json"])["manifests"]
    assert descriptor["annotations"]["io.containerd.image.name"] == f"docker.io/library/{values['repository']}:{tag}"


def test_stan_image_runs_stan_as_its_user_with_the_dockerfiles_python(stan_bundle: Bundle) -> None:
    helped = stan_bundle.run()
    assert helped.returncode == 0 and helped.stdout.startswith("Usage: stan "), helped.stderr
    arguments, _ = _dockerfile()
    python, suite = re.fullmatch(r"python:(\d+\.\d+)-slim-(\w+)", arguments["PYTHON_IMAGE"]).groups()
    probe = (
        "import os, sys, stan_api.app, stan_operator.handlers; "
        "print(os.getuid(), os.getgid(), os.getcwd(), '%d.%d' % sys.version_info[:2], sys.prefix)"
    )
    ran = stan_bundle.run(["python", "-c", probe])
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["10001", "10001", "/tmp", python, "/opt/stan"]
    os_release = dict(line.split("=", 1) for line in (stan_bundle.rootfs / "etc/os-release").read_text().splitlines())
    assert os_release["VERSION_CODENAME"] == suite


def _requirements(distribution: importlib.metadata.Distribution) -> list[Requirement]:
    """What ``distribution`` needs installed, leaving out its extras' requirements."""
    return [
        requirement
        for requirement in map(Requirement, distribution.requires or [])
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""})
    ]


def test_stan_image_venv_holds_stan_and_its_requirements_only(stan_bundle: Bundle) -> None:
    """The Dockerfile installs ``stan`` alone from the wheels of this checkout into a pip-less venv: so the
    venv holds exactly Stan's requirements, closed over, at versions each requirement allows."""
    _, stage = _dockerfile()
    install = _instruction(stage, "RUN")
    assert "python -m venv --without-pip /opt/stan" in install
    assert "install --no-index --find-links=/wheels stan &&" in install
    (site_packages,) = (stan_bundle.rootfs / "opt/stan/lib").glob("python3.*/site-packages")
    installed = {
        canonicalize_name(distribution.metadata["Name"]): distribution
        for distribution in importlib.metadata.distributions(path=[str(site_packages)])
    }
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    stan = installed["stan"]
    assert stan.version == pyproject["version"]
    assert {(canonicalize_name(r.name), r.specifier) for r in _requirements(stan)} == {
        (canonicalize_name(r.name), r.specifier) for r in map(Requirement, pyproject["dependencies"])
    }
    required, pending = {"stan"}, ["stan"]
    while pending:
        for requirement in _requirements(installed[pending.pop()]):
            name = canonicalize_name(requirement.name)
            assert name in installed, f"{requirement} is not installed"
            assert requirement.specifier.contains(installed[name].version, prereleases=True), (
                f"{name} {installed[name].version} does not satisfy {requirement}"
            )
            if name not in required:
                required.add(name)
                pending.append(name)
    assert set(installed) == required, "the venv holds only Stan and what it requires: no pip, no extras"


def test_stan_image_ships_this_checkouts_code(stan_bundle: Bundle) -> None:
    (site_packages,) = (stan_bundle.rootfs / "opt/stan/lib").glob("python3.*/site-packages")
    modules = [path for path in buildcontext.shipped_files(PROJECT_ROOT) if path.suffix == ".py"]
    assert len(modules) > 20
    for module in modules:
        shipped = site_packages / Path(*module.parts[1:])  # operator/stan_operator/x.py is stan_operator/x.py
        assert shipped.read_bytes() == (PROJECT_ROOT / module).read_bytes(), module


def test_a_second_build_is_served_from_the_cache(busybox: images.Image, stan: images.Image) -> None:
    built = {image.archive: image.archive.stat().st_mtime_ns for image in (busybox, stan)}
    started = time.monotonic()
    again = [images.busybox_image(), images.stan_image()]
    assert time.monotonic() - started < 2
    assert {image.archive: image.archive.stat().st_mtime_ns for image in again} == built


def _write(root: Path, files: dict[str, str]) -> None:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)


def test_what_ships_is_what_dockerignore_lets_in(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    shutil.copy(PROJECT_ROOT / ".dockerignore", checkout)
    _write(
        checkout,
        {
            "pyproject.toml": "",
            "README.md": "",
            "Makefile": "",
            "tests/test_x.py": "",
            "operator/stan_operator/models.py": "",
            "operator/stan_operator/__pycache__/models.cpython-311.pyc": "",
            "api/stan.egg-info/PKG-INFO": "",
            "controlplane/stan_controlplane/images.py": "",
            "controlplane/kube/go.mod": "",
            ".git/HEAD": "",
            "charts/stan/Chart.yaml": "",
        },
    )
    shipped = ["README.md", "operator/stan_operator/models.py", "pyproject.toml"]
    assert [str(path) for path in buildcontext.shipped_files(checkout)] == shipped
    digest = buildcontext.snapshot(checkout, tmp_path / "first")
    assert (
        sorted(str(path.relative_to(tmp_path / "first")) for path in (tmp_path / "first").rglob("*") if path.is_file())
        == shipped
    )
    (checkout / "tests/test_x.py").write_text("changed")
    assert buildcontext.snapshot(checkout, tmp_path / "second") == digest, (
        "a file that does not ship leaves the image as it is"
    )
    (checkout / "operator/stan_operator/models.py").write_text("changed")
    changed = buildcontext.snapshot(checkout, tmp_path / "third")
    assert changed != digest, "a file that ships changes the image"
    (checkout / "operator/stan_operator/models.py").chmod(0o755)
    assert buildcontext.snapshot(checkout, tmp_path / "fourth") != changed, "and so does its exec bit"


def test_the_debian_mirror_comes_from_either_apt_source_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian/ trixie main\n"
    )
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n\n"
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n"
        "Types: deb\n# a comment\nURIs: http://two.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n"
    )
    monkeypatch.setattr(debian, "SOURCES", tmp_path / "sources.list")
    monkeypatch.setattr(debian, "SOURCES_DIR", tmp_path / "sources.list.d")
    assert debian.mirror("trixie") == "http://one.example/debian"
    assert debian.mirror("bookworm") == "http://two.example/debian"
    with pytest.raises(RuntimeError, match="serves Debian sid"):
        debian.mirror("sid")


def test_stan_image_holds_only_what_runs_in_a_cluster(stan_bundle: Bundle) -> None:
    """No tools that build or run a local cluster: ``stan`` there has the in-cluster commands alone."""
    (site_packages,) = (stan_bundle.rootfs / "opt/stan/lib").glob("python3.*/site-packages")
    assert sorted(path.name for path in site_packages.glob("stan_*") if path.is_dir()) == [
        "stan_api",
        "stan_cli",
        "stan_core",
        "stan_operator",
    ]
    helped = stan_bundle.run(["stan", "--help"])
    assert helped.returncode == 0, helped.stderr
    commands = [line.split()[0] for line in helped.stdout.split("Commands:")[1].splitlines() if line.strip()]
    assert {"operator", "api", "crds", "apikey"} <= set(commands)
    assert not {"run", "controlplane", "image", "generate"} & set(commands), helped.stdout
