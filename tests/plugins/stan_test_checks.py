"""A third-party check package, installed for the tests through the ``stan.checks`` entry points."""

from __future__ import annotations

import asyncio

from stan_core import models
from stan_operator.checks import CheckContext, Finding


async def explodes(context: CheckContext) -> Finding:
    raise RuntimeError("the plugin broke")


async def hangs(context: CheckContext) -> Finding:
    await asyncio.sleep(3600)
    return Finding(models.CheckStatus.OK, "unreachable")


async def greets(context: CheckContext) -> Finding:
    return Finding(models.CheckStatus.OK, f"hello from {context.namespace}")
