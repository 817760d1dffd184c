"""Heartbeat checks: small diagnostics of a tenant namespace, each answering ok, warn or error.

A registry holds the built-in checks and those that other packages add
through the ``stan.checks`` entry-point group. ``runner`` runs a selection
with a time limit each, so that one slow or broken check never stops the rest.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from kubernetes_asyncio import client

from stan_core import config, models


@dataclasses.dataclass(frozen=True)
class CheckContext:
    api: client.ApiClient
    namespace: str
    configuration: config.OperatorConfig


@dataclasses.dataclass(frozen=True)
class Finding:
    status: models.CheckStatus
    message: str
    details: tuple[str, ...] = ()


class Check(Protocol):
    async def __call__(self, context: CheckContext) -> Finding: ...
