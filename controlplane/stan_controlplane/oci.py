"""OCI image layouts assembled with umoci, and the archives ``ctr images import`` takes.

An image is put together in a layout directory, under the tag ``image``:
layers made from directories as they are (owners, modes, links), then the
runtime config. The archive written from it holds that one image, named twice
in its index: by its tag, for OCI tools, and by its full name, which containerd
takes as the image's name, as its own ``ctr images export`` writes it.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

from stan_controlplane import commands

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
TAG = "image"
"""The tag of the image being built, inside its layout; the archive gives it its real one."""


@dataclasses.dataclass(frozen=True)
class ImageConfig:
    """The runtime part of an image's config: what a Dockerfile's USER, ENV, ENTRYPOINT, CMD, WORKDIR
    and EXPOSE say."""

    user: str
    env: dict[str, str]
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    workdir: str = ""
    ports: tuple[int, ...] = ()

    def umoci_flags(self) -> list[str]:
        flags = [f"--config.user={self.user}"]
        flags += [f"--config.env={name}={value}" for name, value in self.env.items()]
        flags += [f"--config.entrypoint={argument}" for argument in self.entrypoint]
        flags += [f"--config.cmd={argument}" for argument in self.cmd]
        flags += [f"--config.workingdir={self.workdir}"] if self.workdir else []
        return flags + [f"--config.exposedports={port}/tcp" for port in self.ports]


class Layout:
    """An OCI image layout directory holding the image being built."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, path: Path) -> Layout:
        """A new layout with an empty image: no layers, the config of this machine's platform."""
        commands.run(["umoci", "init", "--layout", str(path)], "umoci init")
        commands.run(["umoci", "new", "--image", f"{path}:{TAG}"], "umoci new")
        return cls(path)

    def copy(self, path: Path) -> Layout:
        """A copy to build on, its blobs hard-linked (umoci never writes one in place) and its index copied
        (umoci rewrites that)."""
        shutil.copytree(self.path, path, copy_function=os.link, ignore=shutil.ignore_patterns("index.json"))
        shutil.copy2(self.path / "index.json", path / "index.json")
        return Layout(path)

    def add_layer(self, rootfs: Path, entries: list[str], created_by: str) -> None:
        """Append a layer of ``entries`` of ``rootfs`` with their owners, modes and links as they are;
        ``created_by`` is its history entry."""
        layer = rootfs.parent / "layer.tar"
        commands.run(
            [
                "tar",
                "--create",
                f"--file={layer}",
                "--numeric-owner",
                "--sort=name",
                f"--directory={rootfs}",
                "--",
                *entries,
            ],
            "tar",
        )
        commands.run(
            [
                "umoci",
                "raw",
                "add-layer",
                "--image",
                f"{self.path}:{TAG}",
                f"--history.created_by={created_by}",
                str(layer),
            ],
            "umoci raw add-layer",
        )
        layer.unlink()

    def configure(self, config: ImageConfig) -> None:
        commands.run(["umoci", "config", "--image", f"{self.path}:{TAG}", *config.umoci_flags()], "umoci config")

    def extract(self, rootfs: Path) -> None:
        """Unpack the image's layers into ``rootfs``: plain, since the layers are ours, with no whiteouts."""
        rootfs.mkdir()
        for layer in self._manifest()["layers"]:
            commands.run(
                [
                    "tar",
                    "--extract",
                    "--gzip",
                    f"--file={self._blob(layer['digest'])}",
                    "--numeric-owner",
                    f"--directory={rootfs}",
                ],
                "tar",
            )

    def write_archive(self, archive: Path, tag: str, name: str) -> None:
        """The OCI archive of the image alone, tagged ``tag`` and named ``name`` for containerd."""
        manifest = self._manifest()
        config = json.loads(self._blob(manifest["config"]["digest"]).read_bytes())
        descriptor = self._descriptor() | {
            "platform": {"architecture": config["architecture"], "os": config["os"]},
            "annotations": {REF_NAME: tag, CONTAINERD_NAME: name},
        }
        index = json.loads((self.path / "index.json").read_text()) | {"manifests": [descriptor]}
        blobs = [descriptor["digest"], manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
        with tarfile.open(archive, "w") as tar:
            _add_entry(tar, "oci-layout", (self.path / "oci-layout").read_bytes())
            _add_entry(tar, "index.json", json.dumps(index).encode())
            for directory in ("blobs", *sorted({f"blobs/{digest.partition(':')[0]}" for digest in blobs})):
                _add_entry(tar, directory, None)
            for digest in blobs:
                tar.add(self._blob(digest), arcname=f"blobs/{digest.replace(':', '/')}", filter=_owned_by_root)

    def _descriptor(self) -> dict:
        index = json.loads((self.path / "index.json").read_text())
        return next(entry for entry in index["manifests"] if entry["annotations"][REF_NAME] == TAG)

    def _manifest(self) -> dict:
        return json.loads(self._blob(self._descriptor()["digest"]).read_bytes())

    def _blob(self, digest: str) -> Path:
        return self.path / "blobs" / digest.replace(":", "/")


def _add_entry(tar: tarfile.TarFile, name: str, content: bytes | None) -> None:
    """A file of ``content`` in ``tar``, or a directory when there is none."""
    info = tarfile.TarInfo(name)
    if content is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    else:
        info.size, info.mode = len(content), 0o644
        tar.addfile(info, io.BytesIO(content))


def _owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o644
    return info
