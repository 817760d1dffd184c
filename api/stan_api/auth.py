"""The one authentication dependency: ``X-API-Key`` to a tenant, with the scope checked.

Keys come from a watch on the key Secrets, so a revoked key stops working as
soon as its Secret's deletion reaches the facade (a second or so). Failures
say no more than "missing or unknown key" and "missing scope".
"""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader

from stan_api import keys

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="An API key made with `stan apikey create`.")


class KeyIndex:
    """Stored keys by key id, kept current from the key Secrets' cache."""

    def __init__(self) -> None:
        self._by_id: dict[str, keys.StoredKey] = {}
        self._ids_by_secret: dict[tuple[str, str], str] = {}

    def on_change(self, body: dict | None, secret_key: tuple[str, str]) -> None:
        previous = self._ids_by_secret.pop(secret_key, None)
        if previous is not None:
            self._by_id.pop(previous, None)
        stored = keys.parse_secret(body) if body is not None else None
        if stored is not None:
            self._by_id[stored.principal.key_id] = stored
            self._ids_by_secret[secret_key] = stored.principal.key_id

    def authenticate(self, presented: str | None) -> keys.Principal | None:
        parts = keys.split(presented or "")
        if parts is None:
            return None
        stored = self._by_id.get(parts[0])
        if stored is None or not keys.matches(stored, parts[1]):
            return None
        return stored.principal


def tenant(request: Request, presented: Annotated[str | None, Security(api_key_header)]) -> keys.Principal:
    principal = request.app.state.facade.keys.authenticate(presented)
    if principal is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or unknown API key",
                            headers={"WWW-Authenticate": "X-API-Key"})
    if keys.EXECUTE_SCOPE not in principal.scopes:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"the API key lacks the {keys.EXECUTE_SCOPE} scope")
    request.state.principal = principal
    return principal


Tenant = Annotated[keys.Principal, Depends(tenant)]
