"""``stan apikey``: manage API keys in the cluster of the current kubeconfig."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
from kubernetes_asyncio import client

from stan_api import keys, keystore
from stan_operator import kube

Result = TypeVar("Result")


def _with_api(call: Callable[[client.ApiClient], Awaitable[Result]]) -> Result:
    async def run() -> Result:
        api = await kube.api_client()
        async with api:
            return await call(api)

    return asyncio.run(run())


@click.group()
def apikey() -> None:
    """API keys for the REST API (stored as hashes in Secrets of Stan's namespace)."""


@apikey.command()
@click.option("--user", required=True, help="Who the key is for.")
@click.option("--scopes", default=keys.EXECUTE_SCOPE, show_default=True,
              help="Space- or comma-separated scopes.")
@click.option("--namespace", help="The tenant namespace (default: stan-<user>); created if missing.")
def create(user: str, scopes: str, namespace: str | None) -> None:
    """Issue a key; it is printed once, on the last line."""
    scope_list = [scope for scope in scopes.replace(",", " ").split() if scope]
    key, principal = _with_api(lambda api: keystore.issue(api, user, scope_list, namespace))
    click.echo(f"key id:    {principal.key_id}", err=True)
    click.echo(f"user:      {principal.user}", err=True)
    click.echo(f"tenant:    {principal.namespace}", err=True)
    click.echo(f"scopes:    {' '.join(sorted(principal.scopes))}", err=True)
    click.echo("Keep the key below; it is not shown again.", err=True)
    click.echo(key)


@apikey.command("list")
def list_command() -> None:
    """The keys that exist (never their secrets)."""
    found = _with_api(keystore.list_keys)
    rows = [("KEY ID", "USER", "TENANT", "SCOPES", "CREATED")]
    rows += [(p.key_id, p.user, p.namespace, " ".join(sorted(p.scopes)), p.created_at) for p in found]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


@apikey.command()
@click.argument("key_id")
def revoke(key_id: str) -> None:
    """Revoke a key by its id; it stops working within seconds."""
    if not _with_api(lambda api: keystore.revoke(api, key_id)):
        raise click.ClickException(f"no API key with id {key_id!r}")
    click.echo(f"revoked {key_id}")
