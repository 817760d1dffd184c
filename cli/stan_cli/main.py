"""``stan``: one entry point for people; each subcommand delegates to a library call."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import click

from stan_cli import apikey, tasks
from stan_core import config, install
from stan_operator import webhooks


@click.group()
def cli() -> None:
    """Stan: scheduled tasks and a health heartbeat on Kubernetes."""


@cli.command("operator")
@click.option("--namespace", "namespaces", multiple=True, help="Watch only these namespaces (default: all).")
@click.option("--webhook/--no-webhook", default=True, show_default=True, help="Serve the validating admission webhook.")
@click.option(
    "--webhook-manage/--no-webhook-manage",
    default=True,
    show_default=True,
    help="Keep the ValidatingWebhookConfiguration registered (off when a Helm chart owns it).",
)
@click.option("--webhook-listen", default="0.0.0.0", show_default=True)
@click.option("--webhook-port", default=9443, show_default=True, type=int)
@click.option(
    "--webhook-host",
    default="127.0.0.1",
    show_default=True,
    help="The host name the API server reaches the webhook at.",
)
@click.option(
    "--webhook-cert-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="A directory with tls.crt, tls.key and ca.crt; self-signed ones are made when absent.",
)
@click.option(
    "--leader-election/--no-leader-election",
    default=False,
    show_default=True,
    help="Fire ticks only while holding the Lease 'stan-operator' in $STAN_NAMESPACE (for replicas).",
)
@click.option("--liveness", default="http://0.0.0.0:8081/healthz", show_default=True)
@click.option("--metrics-host", default="0.0.0.0", show_default=True, help="Where Prometheus metrics are served.")
@click.option(
    "--metrics-port", envvar="STAN_METRICS_PORT", default=9090, show_default=True, type=int, help="0: not served."
)
@click.option("--verbose", is_flag=True)
def operator_command(
    namespaces: tuple[str, ...],
    webhook: bool,
    webhook_manage: bool,
    webhook_listen: str,
    webhook_port: int,
    webhook_host: str,
    webhook_cert_dir: Path | None,
    leader_election: bool,
    liveness: str,
    metrics_host: str,
    metrics_port: int,
    verbose: bool,
) -> None:
    """Run the operator in the foreground."""
    import kopf

    from stan_operator import handlers

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not verbose:
        # One line per watch event and per admission review drowns what matters.
        for chatty in ("kopf.objects", "aiohttp.access"):
            logging.getLogger(chatty).setLevel(logging.WARNING)
    webhook_options = None
    if webhook:
        webhook_options = webhooks.WebhookOptions(
            webhook_listen, webhook_port, webhook_host, webhook_cert_dir, manage_configuration=webhook_manage
        )
        handlers.serve_admission()
    if config.load().jobActions:
        handlers.follow_jobs()
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=liveness,
        memo=kopf.Memo(
            options=handlers.Options(
                webhook=webhook_options,
                leader_election=leader_election,
                metrics_address=(metrics_host, metrics_port) if metrics_port else None,
            )
        ),
    )


@cli.command("api")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="STAN_API_PORT", default=8080, show_default=True, type=int)
@click.option(
    "--tls-cert-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Serve HTTPS with this PEM certificate (chain); needs --tls-key-file. Read at start.",
)
@click.option(
    "--tls-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The PEM private key of --tls-cert-file.",
)
def api_command(host: str, port: int, tls_cert_file: Path | None, tls_key_file: Path | None) -> None:
    """Run the REST facade in the foreground."""
    import uvicorn

    if (tls_cert_file is None) != (tls_key_file is None):
        raise click.UsageError("--tls-cert-file and --tls-key-file go together")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        "stan_api.app:create_app",
        factory=True,
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        log_config=None,
        ssl_certfile=tls_cert_file,
        ssl_keyfile=tls_key_file,
    )


@cli.group()
def crds() -> None:
    """The CustomResourceDefinitions, generated from the models by `stan generate`."""


@crds.command("apply")
def crds_apply() -> None:
    """Create or update the CRDs in the current kubeconfig's cluster and wait until they are established."""
    for name in asyncio.run(install.apply_crds_to_current_cluster()):
        click.echo(f"established {name}")


cli.add_command(apikey.apikey)
cli.add_command(tasks.tasks)
try:
    from stan_controlplane import cli as local
except ModuleNotFoundError as missing:  # Stan's image ships only what runs in a cluster
    if missing.name != "stan_controlplane":
        raise
else:
    for command in local.COMMANDS:
        cli.add_command(command)


def main() -> None:
    cli(prog_name="stan")
