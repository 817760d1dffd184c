"""The cluster of the current kubeconfig, as the commands that act on it reach it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
from kubernetes_asyncio import client

from stan_core import kube

Result = TypeVar("Result")


def with_api(call: Callable[[client.ApiClient], Awaitable[Result]], *refusals: type[Exception]) -> Result:
    """Run ``call`` with a client of the current kubeconfig; each of ``refusals`` is told as a plain error."""

    async def run() -> Result:
        api = await kube.api_client()
        async with api:
            return await call(api)

    try:
        return asyncio.run(run())
    except refusals as error:
        raise click.ClickException(str(error)) from None
