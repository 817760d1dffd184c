"""The commands that run Stan on this machine and build what that needs: ``stan run``, ``stan controlplane``,
``stan image`` and ``stan generate``. They work from a source tree; an installation without this package
(Stan's image) has only the commands that run in a cluster."""

from __future__ import annotations

from pathlib import Path

import click

from stan_controlplane import build, chartgen, images, node, supervisor
from stan_core import crdgen

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CRDS_DIR = PROJECT_ROOT / "crds"
CHART_DIR = PROJECT_ROOT / "charts" / "stan"
CHART_CRDS_DIR = CHART_DIR / "files" / "crds"


@click.command()
@click.option("--api-port", envvar="STAN_API_PORT", default=8080, show_default=True, type=int)
@click.option("--metrics-port", envvar="STAN_METRICS_PORT", default=9090, show_default=True, type=int)
def run(api_port: int, metrics_port: int) -> None:
    """Run Stan locally: the control plane (unless KUBECONFIG is set), the CRDs, the operator and the API."""
    raise SystemExit(supervisor.run(PROJECT_ROOT, api_port, metrics_port))


@click.command()
def generate() -> None:
    """Write everything generated from the models: crds/ and the Helm chart's copy of it, and the
    chart's operator configuration (its defaults in values.yaml, its schema in values.schema.json)."""
    for path in [*crdgen.write(CRDS_DIR), *crdgen.write(CHART_CRDS_DIR), *chartgen.write(CHART_DIR)]:
        click.echo(f"wrote {path}")


@click.group()
def controlplane() -> None:
    """The local cluster (etcd, kube-apiserver, kube-controller-manager; as root a node) built from source."""


@controlplane.command("build")
def controlplane_build() -> None:
    """Build and cache the pinned binaries unless they are cached already: the node's too where it runs."""
    with_node = node.wanted()
    components = build.CONTROL_PLANE + (build.NODE if with_node else ())
    build.ensure_built(components)
    if with_node:
        node.prepare()
    for component in components:
        click.echo(f"{component.name} {component.version}: {build.binary_dir(component)}")


@click.group()
def image() -> None:
    """Stan's OCI image, built here from the Dockerfile's recipe without Docker or a registry."""


@image.command("build")
def image_build() -> None:
    """Build Stan's image unless it is cached (root: debootstrap, umoci) and print its OCI archive's path."""
    try:
        built = images.stan_image()
    except RuntimeError as error:  # no root, a package missing, a failed step: say which, without a traceback
        raise click.ClickException(str(error)) from error
    click.echo(f"{built.reference} (in containerd: {built.containerd_name})", err=True)
    click.echo(built.archive)


COMMANDS = (run, generate, controlplane, image)
