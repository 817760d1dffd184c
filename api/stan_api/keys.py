"""API keys: long random secrets with a recognisable prefix, stored only as a hash.

A key reads ``stan_<key id>_<secret>``. The key id is public and names the
StanAPIKey object, in Stan's own namespace, that holds the SHA-256 of the
secret part with the key's user, tenant namespace, scopes and expiry; the
secret part is compared in constant time against the hash. Keys are a kind of
their own so that RBAC can grant the facade exactly them and no Secret.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import hmac
import re
import secrets
import string

import pydantic

from stan_core import models

PREFIX = "stan_"
EXECUTE_SCOPE = "stan:execute"
KNOWN_SCOPES = (EXECUTE_SCOPE,)
_ID_ALPHABET = string.ascii_lowercase + string.digits
_KEY = re.compile(r"^stan_([a-z0-9]{10})_([A-Za-z0-9_-]{43})$")
_USER = re.compile(r"^[a-z0-9]([a-z0-9-]{0,56}[a-z0-9])?$")
USER_RULE = (
    "a user name is 1 to 58 lowercase letters, digits and '-', starting and ending with a letter or "
    "digit, so that each user has a tenant namespace of its own: stan-<user>"
)
TENANT_PREFIX = "stan-"


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who a key speaks for."""

    key_id: str
    user: str
    namespace: str
    scopes: frozenset[str]
    created_at: str
    expires_at: datetime.datetime | None = None
    last_used_at: datetime.datetime | None = None

    def expired(self, now: datetime.datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


@dataclasses.dataclass(frozen=True)
class StoredKey:
    principal: Principal
    digest: str


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key() -> tuple[str, str, str]:
    """A fresh key: (the key to hand out once, its id, the hash to store)."""
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(10))
    secret = secrets.token_urlsafe(32)
    return f"{PREFIX}{key_id}_{secret}", key_id, _digest(secret)


def manifest(key_id: str, spec: models.StanAPIKeySpec) -> dict:
    return {
        "apiVersion": models.API_VERSION,
        "kind": models.STAN_API_KEY.kind,
        "metadata": {"name": key_id},
        "spec": spec.model_dump(mode="json", exclude_none=True),
    }


def parse(body: dict) -> StoredKey | None:
    """The key a StanAPIKey object stores, or None when it is not a well-formed one."""
    try:
        spec = models.StanAPIKeySpec.model_validate(body.get("spec") or {})
        status = models.StanAPIKeyStatus.model_validate(body.get("status") or {})
    except pydantic.ValidationError:
        return None
    metadata = body["metadata"]
    principal = Principal(
        key_id=metadata["name"],
        user=spec.user,
        namespace=spec.tenant,
        scopes=frozenset(spec.scopes),
        created_at=metadata.get("creationTimestamp", ""),
        expires_at=spec.expiresAt,
        last_used_at=status.lastUsedAt,
    )
    return StoredKey(principal=principal, digest=spec.sha256)


def split(key: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    match = _KEY.match(key)
    return (match.group(1), match.group(2)) if match else None


def matches(stored: StoredKey, secret: str) -> bool:
    return hmac.compare_digest(stored.digest, _digest(secret))


def check_user(user: str) -> None:
    """Refuse a user name that would not map one-to-one onto its tenant namespace."""
    if not _USER.match(user):
        raise ValueError(f"invalid user name {user!r}: {USER_RULE}")


def check_scopes(scopes: list[str]) -> None:
    unknown = sorted(set(scopes) - set(KNOWN_SCOPES))
    if unknown:
        raise ValueError(
            f"unknown scope{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"known scopes: {', '.join(KNOWN_SCOPES)}"
        )


def tenant_namespace(user: str) -> str:
    """The namespace a user's tenant gets by default; one-to-one, as ``check_user`` ensures."""
    return TENANT_PREFIX + user
