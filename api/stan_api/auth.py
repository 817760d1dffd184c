"""Who a request speaks for: ``X-API-Key`` to a tenant, with expiry, scope and last use.

Keys come from a watch on the StanAPIKey objects, so a revoked key stops
working as soon as its deletion reaches the facade (a second or so). The
decision is made at the door (``guard``), before anything reads the body;
routes receive the principal through the one dependency below. Failures say
no more than "missing or unknown key" and "missing scope".
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from stan_api import keys

USE_RECORD_SECONDS = 60.0
log = logging.getLogger(__name__)

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key made with `stan apikey create`."
)


class KeyIndex:
    """Stored keys by key id, kept current from the StanAPIKey objects' cache."""

    def __init__(self) -> None:
        self._by_id: dict[str, keys.StoredKey] = {}

    def on_change(self, body: dict | None, object_key: tuple[str, str]) -> None:
        stored = keys.parse(body) if body is not None else None
        if stored is None:
            self._by_id.pop(object_key[1], None)
        else:
            self._by_id[stored.principal.key_id] = stored

    def authenticate(self, presented: str | None, now: datetime.datetime) -> keys.Principal | None:
        parts = keys.split(presented or "")
        if parts is None:
            return None
        stored = self._by_id.get(parts[0])
        if stored is None or not keys.matches(stored, parts[1]) or stored.principal.expired(now):
            return None
        return stored.principal


class UseRecorder:
    """Writes each key's last use at most once a minute, beside the request, so that requests
    do not turn into writes; a failed write is logged and tried again at the next use."""

    def __init__(self, record: Callable[[str, datetime.datetime], Awaitable[None]]) -> None:
        self._record = record
        self._written: dict[str, datetime.datetime] = {}
        self._pending: set[asyncio.Task[None]] = set()

    def used(self, principal: keys.Principal, now: datetime.datetime) -> None:
        last = max(filter(None, (self._written.get(principal.key_id), principal.last_used_at)), default=None)
        if last is not None and (now - last).total_seconds() < USE_RECORD_SECONDS:
            return
        self._written[principal.key_id] = now
        task = asyncio.create_task(self._write(principal.key_id, now), name=f"key-use-{principal.key_id}")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write(self, key_id: str, now: datetime.datetime) -> None:
        try:
            await self._record(key_id, now)
        except Exception as error:
            self._written.pop(key_id, None)
            log.warning("could not record the use of key %s: %s: %s", key_id, type(error).__name__, error)

    def stop(self) -> None:
        for task in self._pending:
            task.cancel()


def tenant(request: Request, presented: Annotated[str | None, Security(api_key_header)]) -> keys.Principal:
    """The principal the guard admitted; the header parameter documents the scheme in OpenAPI."""
    principal: keys.Principal = request.state.principal
    return principal


Tenant = Annotated[keys.Principal, Depends(tenant)]
