"""``stan apikey``: manage API keys in the cluster of the current kubeconfig."""

from __future__ import annotations

import datetime
import re

import click

from stan_api import keys, keystore
from stan_cli.cluster import with_api
from stan_core import models

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _duration(context: click.Context, parameter: click.Parameter, value: str | None) -> datetime.timedelta | None:
    if value is None:
        return None
    match = _DURATION.match(value)
    if not match or int(match.group(1)) == 0:
        raise click.BadParameter("a whole positive number and a unit: s, m, h or d (e.g. 90d)")
    return datetime.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _when(value: datetime.datetime | None) -> str:
    return models.format_timestamp(value) if value else "-"


@click.group()
def apikey() -> None:
    """API keys for the REST API (StanAPIKey objects in Stan's namespace, holding only a hash)."""


@apikey.command()
@click.option("--user", required=True, help=f"Who the key is for; {keys.USER_RULE}.")
@click.option(
    "--scopes",
    default=keys.EXECUTE_SCOPE,
    show_default=True,
    help=f"Space- or comma-separated scopes; known: {', '.join(keys.KNOWN_SCOPES)}.",
)
@click.option(
    "--namespace",
    help="The tenant namespace (default: stan-<user>); created if missing. "
    "default, kube-* and Stan's own namespace are refused.",
)
@click.option("--shared", is_flag=True, help="Allow a namespace that is already another user's tenant.")
@click.option(
    "--expires-in",
    callback=_duration,
    metavar="DURATION",
    help="The key is refused after this long, e.g. 90d, 12h (default: never).",
)
def create(user: str, scopes: str, namespace: str | None, shared: bool, expires_in: datetime.timedelta | None) -> None:
    """Issue a key; it is printed once, on the last line."""
    scope_list = [scope for scope in scopes.replace(",", " ").split() if scope]
    key, principal = with_api(
        lambda api: keystore.issue(api, user, scope_list, namespace, shared=shared, expires_in=expires_in),
        keystore.Refused,
    )
    click.echo(f"key id:    {principal.key_id}", err=True)
    click.echo(f"user:      {principal.user}", err=True)
    click.echo(f"tenant:    {principal.namespace}", err=True)
    click.echo(f"scopes:    {' '.join(sorted(principal.scopes))}", err=True)
    click.echo(f"expires:   {_when(principal.expires_at) if principal.expires_at else 'never'}", err=True)
    click.echo("Keep the key below; it is not shown again.", err=True)
    click.echo(key)


@apikey.command("list")
def list_command() -> None:
    """The keys that exist (never their secrets), with their expiry and last use."""
    found = with_api(keystore.list_keys, keystore.Refused)
    rows = [("KEY ID", "USER", "TENANT", "SCOPES", "CREATED", "EXPIRES", "LAST USED")]
    rows += [
        (
            p.key_id,
            p.user,
            p.namespace,
            " ".join(sorted(p.scopes)),
            p.created_at,
            _when(p.expires_at),
            _when(p.last_used_at),
        )
        for p in found
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@apikey.command()
@click.argument("key_id")
def revoke(key_id: str) -> None:
    """Revoke a key by its id; it stops working within seconds."""
    if not with_api(lambda api: keystore.revoke(api, key_id), keystore.Refused):
        raise click.ClickException(f"no API key with id {key_id!r}")
    click.echo(f"revoked {key_id}")
