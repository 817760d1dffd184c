"""The committed CRDs are exactly what the models generate, and an installed wheel applies them."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from stan_controlplane import buildcontext, cluster
from stan_core import crdgen, models

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CRDS = PROJECT_ROOT / "crds"


def test_committed_crds_match_the_models() -> None:
    for resource in models.RESOURCES:
        committed = crdgen.crd_path(CRDS, resource).read_text()
        assert committed == crdgen.render(resource), (
            f"{resource.crd_name} drifted from stan_core.models; run `make generate` and commit the result"
        )


def test_schemas_are_structural() -> None:
    """No $ref, anyOf or titles: Kubernetes refuses or ignores them."""

    def walk(node: object) -> None:
        if isinstance(node, dict):
            assert not {"$ref", "anyOf", "allOf", "title", "$defs"} & node.keys(), node
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for resource in models.RESOURCES:
        walk(crdgen.crd(resource))


def test_stan_crds_apply_works_from_an_installed_wheel(
    control_plane: cluster.ControlPlane | None, tmp_path: Path
) -> None:
    """Built, as the image's wheel is, and installed away from the source tree, ``stan crds apply`` finds the
    CRDs: they come from the models, not from files."""
    source, wheels, target = tmp_path / "source", tmp_path / "wheels", tmp_path / "installed"
    buildcontext.snapshot(PROJECT_ROOT, source)  # what the image's wheel is built from, away from this tree
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "--wheel-dir", str(wheels), str(source)], check=True)
    (wheel,) = wheels.glob("stan-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packages = {name.split("/")[0] for name in archive.namelist() if not name.startswith("stan-")}
    assert packages == {"stan_core", "stan_operator", "stan_api", "stan_cli"}, "what runs in a cluster, no more"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    # The installed packages come first on the path; the dependencies come from this virtualenv.
    environment = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run(
        [sys.executable, "-c", "import stan_core.install; print(stan_core.install.__file__)"],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.strip().startswith(str(target)), where.stdout
    applied = subprocess.run(
        [sys.executable, "-m", "stan_cli", "crds", "apply"],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.split("\n")[:-1] == [f"established {resource.crd_name}" for resource in models.RESOURCES]
